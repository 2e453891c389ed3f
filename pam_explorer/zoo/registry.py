"""Registry of architectures, shared by the CLI, the dashboard's select boxes and the tests."""
from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pam_explorer.core.errors import ConfigError, StructureError

Factory = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    ``factory(num_outputs, in_channels, image_size, **kwargs)`` builds an untrained network
    that maps (N, in_channels, image_size, image_size) images to (N, num_outputs) logits.
    """

    name: str
    factory: Factory
    description: str
    kind: str = "chain"  # one of KINDS: dispatches the layer map, geometry and merging


KINDS = ("chain", "residual")  # chain: zoo.chain.ChainNet; residual: zoo.resnet.ResidualNet
_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, kind: str = "chain") -> Callable[[Factory], Factory]:
    """Decorator registering ``factory`` under ``name``."""

    if kind not in KINDS:
        raise ConfigError(f"model {name!r}: kind must be one of {KINDS}, got {kind!r}")

    def deco(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelSpec(name, factory, description, kind)
        return factory

    return deco


def get_model(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; registered models: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def list_models(kind: str | None = None) -> list[str]:
    """Registered names, sorted; only those of ``kind`` when given."""
    return sorted(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def model_kind(net: nn.Module) -> str:
    """"chain" or "residual": the registered kind of ``net.arch``, else the class's ``kind``.

    Raises StructureError for a network of neither kind (it cannot be mapped or merged).
    """
    arch = getattr(net, "arch", None)
    if isinstance(arch, str) and arch in _REGISTRY:
        return _REGISTRY[arch].kind
    kind = getattr(type(net), "kind", None)
    if kind not in KINDS:
        raise StructureError(f"{type(net).__name__} is neither a chain network (zoo.chain.ChainNet) nor a "
                             f"residual one (zoo.resnet.ResidualNet); registered models: {sorted(_REGISTRY)}")
    return kind


def model_options(name: str) -> list[str]:
    """The keyword options of architecture ``name`` beyond num_outputs, in_channels and image_size
    (e.g. ["width", "small_input"] for a ResNet); ConfigError for an unknown name."""
    params = inspect.signature(get_model(name).factory).parameters
    return [n for n in params if n not in ("num_outputs", "in_channels", "image_size")]


def build_model(name: str, num_outputs: int, in_channels: int = 1, image_size: int = 32,
                **kwargs: object) -> nn.Module:
    """Build an untrained network of architecture ``name``."""
    return get_model(name).factory(num_outputs, in_channels, image_size, **kwargs)
