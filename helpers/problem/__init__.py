"""The problem: Fashion-MNIST and LeNet-5."""
