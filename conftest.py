"""Session-wide test settings: quick runs never write into the study's outputs/runs."""
import os
import tempfile

os.environ.setdefault("FMNIST_RUNS_DIR", tempfile.mkdtemp(prefix="fmnist-test-runs-"))
os.environ.setdefault("FMNIST_DEVICE", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# One thread per process: kernels, workers and pytest share 2 cores without oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")
