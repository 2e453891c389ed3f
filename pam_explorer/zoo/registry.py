"""Registry of architectures, shared by the CLI, the dashboard's select boxes and the tests."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pam_explorer.core.errors import ConfigError

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
    kind: str = "chain"  # "chain" now; "residual" reserved for ResNet-18/34


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, description: str, kind: str = "chain") -> Callable[[Factory], Factory]:
    """Decorator registering ``factory`` under ``name``."""

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


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, num_outputs: int, in_channels: int = 1, image_size: int = 32,
                **kwargs: object) -> nn.Module:
    """Build an untrained network of architecture ``name``."""
    return get_model(name).factory(num_outputs, in_channels, image_size, **kwargs)
