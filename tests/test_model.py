import torch

from helpers.problem.model import LeNet5, N_CONSTRAINED_WEIGHTS, N_PARAMETERS, constrained_weights, count_parameters, density


def test_parameter_counts_match_the_starter():
    model = LeNet5()
    assert count_parameters(model) == N_PARAMETERS == 44_426
    fc1, fc2 = constrained_weights(model)
    assert fc1.shape == (120, 256) and fc1.numel() == 30_720
    assert fc2.shape == (84, 120) and fc2.numel() == 10_080
    assert N_CONSTRAINED_WEIGHTS == 40_800


def test_forward_shape_and_density():
    model = LeNet5()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert density(model) == 1.0
    with torch.no_grad():
        model.fc1.weight.zero_()
    assert abs(density(model) - 10_080 / 40_800) < 1e-12
