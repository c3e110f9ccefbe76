"""The benchmark's parts that a CPU-only test run can exercise: FLOP counting, the peak measurement,
the per-method K-against-1 throughput and the GPU section's model-epochs path (run here on a CPU
at a tiny size; on a GPU the same function runs K = 1, 8, 32, 128 over the full training set)."""
import pandas as pd
import pytest
import torch

from benchmarks.flops import layer_macs, peak_flops, training_flops_per_sample
from benchmarks.methods import method_throughput, model_epochs, summarize_methods
from helpers.problem.data import load


pytestmark = pytest.mark.usefixtures("one_thread")


def test_lenet_flops_follow_the_layer_shapes():
    macs = dict(layer_macs())
    assert macs == {"conv1": 6 * 24 * 24 * 1 * 25, "conv2": 16 * 8 * 8 * 6 * 25, "fc1": 256 * 120,
                    "fc2": 120 * 84, "fc3": 84 * 10}
    flops = training_flops_per_sample()
    total = sum(macs.values())
    assert flops["forward"] == 2 * total
    assert flops["training"] == 2 * total + 2 * total + 2 * (total - macs["conv1"])


def test_peak_is_a_positive_rate():
    peak = peak_flops(torch.device("cpu"), n=128, repeats=2)
    assert peak["flops_per_s"] > 1e6 and peak["threads"] == 1


def test_method_throughput_compares_k_models_with_one():
    data = load(train_fraction=0.005, val_size=100)
    frame = method_throughput(data, 0.005, rounds=1, ks=(1, 2), methods=("svrg", "sgd_polyak"))
    assert set(frame["models"]) == {1, 2}
    summary = summarize_methods(frame).set_index("method")
    assert list(summary.index) == ["svrg", "sgd_polyak"]
    assert summary.loc["svrg", "oracle_per_sample"] > 1.5  # snapshot pass + two batch gradients per step
    assert summary.loc["sgd_polyak", "oracle_per_sample"] == pytest.approx(1.0)
    assert (summary["ratio_cpu"] > 0).all() and (summary["cpu_K2"] > 0).all()


def test_model_epochs_path_runs_on_a_cpu_at_a_tiny_size():
    data = load(train_fraction=0.005, val_size=100)
    frame = model_epochs(data, ks=(1, 2))
    assert list(frame["models"]) == [1, 2]
    assert (frame["epochs"] == 1).all()
    assert (frame["model_epochs_per_s"] > 0).all()
    assert frame["model_samples_per_s"].iloc[1] == pytest.approx(
        frame["model_epochs_per_s"].iloc[1] * len(data.train))


def test_machine_throughput_sums_the_workers_and_compares_with_the_starter(tmp_path):
    from benchmarks.machine import machine_lines, machine_throughput, summarize_machine
    from benchmarks.run import starter_dataset
    frame = machine_throughput(starter_dataset(tmp_path), 0.005, rounds=1, k=2, processes=2, starter_threads=1)
    assert list(frame["processes"]) == [1, 2] and list(frame["models"]) == [1, 4]
    workers = frame.iloc[1]
    assert workers["samples"] == 2 * 2 * 300  # two workers, two models each, 0.5% of 60,000 images
    assert frame["ratio"].iloc[0] == 1.0
    assert workers["ratio"] == pytest.approx(workers["samples_per_s"] / frame["samples_per_s"].iloc[0])
    summary = summarize_machine(frame)
    assert "| engine, 2 process(es) x K=2, 1 thread each | 4 |" in "\n".join(machine_lines(summary))


def test_a_cpu_run_shows_the_gpu_table_a_device_run_brought_back_and_says_so(tmp_path):
    from benchmarks.run import gpu_lines_from_device_run
    assert "not measured" in gpu_lines_from_device_run(tmp_path)[0]
    pd.DataFrame({"models": [1, 8], "epochs": [1.0, 1.0], "steps": [782, 782], "train_s": [2.0, 4.0],
                  "run_s": [2.1, 4.1], "model_epochs_per_s": [0.5, 2.0],
                  "model_samples_per_s": [25_000, 100_000]}).to_csv(tmp_path / "model_epochs_gpu.csv")
    (tmp_path / "model_epochs_gpu.json").write_text(
        '{"device": "NVIDIA H200", "torch": "2.11.0", "date": "2026-11-30", "commit": "abcdef0123456", '
        '"command": "bash tools/device_study.sh 545"}')
    lines = gpu_lines_from_device_run(tmp_path)
    assert "NVIDIA H200" in lines[0] and "not this run" in lines[0] and "abcdef0123" in lines[0]
    assert lines[-1] == "| 8 | 2.00 | 100,000 | 4.0 | 4.0 |"


def test_the_gpu_variants_table_is_read_from_a_device_run_failures_shown(tmp_path):
    from benchmarks.gpu_variants import variant_lines
    assert "not measured" in variant_lines(tmp_path)[0]
    pd.DataFrame({"variant": ["grouped", "grouped", "triton"], "models": [1, 128, 1],
                  "model_epochs_per_s": [0.5, 17.5, float("nan")],
                  "error": [None, None, "CompilationError: x"]}).to_csv(tmp_path / "gpu_variants.csv", index=False)
    (tmp_path / "gpu_variants.json").write_text(
        '{"device": "NVIDIA H200", "torch": "2.11.0", "date": "2026-12-02", "commit": "abcdef0123456", '
        '"command": "bash tools/device_speed.sh 480"}')
    lines = variant_lines(tmp_path)
    assert "NVIDIA H200" in lines[0] and "not this run" in lines[0]
    assert lines[2:] == ["| variant | K = 1 | K = 128 |", "|---|---:|---:|", "| grouped | 0.50 | 17.50 |",
                         "| triton | failed |  |"]


def test_the_committed_readme_table_is_rendered_from_the_committed_results(tmp_path):
    import shutil

    from benchmarks.run import OUT, render
    from helpers.runtime import ROOT
    for name in OUT.iterdir():
        if name.is_file():
            shutil.copy(name, tmp_path / name.name)
    (tmp_path / "README_table.md").unlink()
    assert render(tmp_path) == 0
    table = (tmp_path / "README_table.md").read_text()
    assert table == (OUT / "README_table.md").read_text()
    assert table.strip() in (ROOT / "README.md").read_text()


def test_gpu_variants_table_and_profile_are_written_on_a_cpu_at_a_tiny_size(tmp_path):
    """The GPU variants' bookkeeping (on a CPU every variant is the eager grouped path): one row
    per variant and K, written as it goes; the profile tables the operations; the time limit
    stops new rows.
    """
    from benchmarks.gpu_variants import VARIANTS, measure, profile
    data = load(train_fraction=0.003, val_size=100)
    frame = measure(data, (1,), tmp_path, limit_s=600)
    assert list(frame.variant) == [v[0] for v in VARIANTS] and (frame.error == "").all()
    assert (frame.model_epochs_per_s > 0).all()
    assert pd.read_csv(tmp_path / "gpu_variants.csv").shape[0] == len(VARIANTS)
    assert measure(data, (1, 2), tmp_path, limit_s=0).empty
    assert "aten::baddbmm" in profile(load(train_fraction=0.01, val_size=100), 2, "grouped", steps=2)
