"""Explorer.open on residual nets, end to end: MI trajectories per neuron layer (inner convs and
stage streams), groups at any alpha, buildability, predicted FLOPs equal to the built net's."""
from pam_explorer.core.config import DataConfig, MIConfig, RegroupConfig
from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.export import load
from pam_explorer.merge.build import merge_networks
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs.merge_run import merged_model_bytes
from tests.helpers import tiny_resnets


def test_explorer_regroups_residual_nets(monkeypatch, tmp_path):
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path))
    nets = tiny_resnets(2, size=32, outputs=(5, 5))
    ex = Explorer.open("digits-2task", MIConfig(n_samples=32), DataConfig(n_train=100, n_val=20, n_test=20),
                       nets=nets)
    assert list(ex.trajs.layers) == ex.geometry.neuron_layers and "layer2" in ex.trajs.layers
    assert ex.trajs.widths["layer4"] == 64 and ex.geometry.kind == "residual"
    built = 0
    for alpha in (0.0, 0.5, float("inf")):
        cfg = RegroupConfig(alpha=alpha)
        groups = ex.groups(cfg)
        if ex.check(cfg) is not None:  # a grouping that cannot be built: the explorer says why
            continue
        built += 1
        net = merge_networks(ex.nets, ex.tasks, groups)
        assert ex.predicted_flops(cfg)["PAM"] == {k: v["flops"] for k, v in subset_costs(net).items()}
        sizes = {subset_key(k): len(v) for k, v in groups["layer3"].groups.items() if v}
        assert sizes == {k: v for k, v in net.group_widths()["layer3"].items() if v}
    assert built >= 2
    assert ex.check(RegroupConfig(alpha=0.0)) is None  # everything shared
    assert load(merged_model_bytes(ex, RegroupConfig(alpha=0.0))).geometry == ex.geometry
