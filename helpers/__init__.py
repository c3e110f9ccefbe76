"""fmnist-optim helpers: data, model, optimizers, scenarios, training engine, records, sweeps."""
from .engine.config import RunConfig
from .problem.model import LeNet5

__version__ = "0.1.0"
__all__ = ["LeNet5", "RunConfig", "__version__"]
