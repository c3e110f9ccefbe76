"""fmnist-optim helpers: data, model, optimizers, scenarios, training engine, records, sweeps."""
from .config import RunConfig
from .model import LeNet5

__version__ = "0.1.0"
__all__ = ["LeNet5", "RunConfig", "__version__"]
