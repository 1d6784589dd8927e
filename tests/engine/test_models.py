import pytest
import torch

from msda_widgets.config import ModelConfig
from msda_widgets.engine.models import MODELS, DeepCNN, LSTMAutoencoder, ModelSpec, build_model, register_model
from msda_widgets.errors import ConfigError


@pytest.mark.parametrize("lookback", [4, 5, 10, 33])
@pytest.mark.parametrize("n_sensors", [1, 3, 26, 120])
def test_deepcnn_any_sensors_any_lookback(lookback, n_sensors):
    model = build_model(ModelConfig(model="deepcnn", lookback=lookback), n_sensors).eval()
    out = model(torch.randn(5, lookback, n_sensors))
    assert out.shape == (5, n_sensors)
    assert torch.isfinite(out).all()


def test_deepcnn_convolves_over_time_with_sensors_as_channels():
    model = build_model(ModelConfig(lookback=10, conv_channels=(8, 6)), 26)
    convs = model.conv_layers
    assert len(convs) == 2
    assert convs[0].in_channels == 26 and convs[0].out_channels == 8
    assert convs[1].in_channels == 8 and convs[1].out_channels == 6


def test_deepcnn_refuses_short_lookback():
    with pytest.raises(ConfigError, match="lookback >= 4"):
        build_model(ModelConfig(model="deepcnn", lookback=3), 5)


@pytest.mark.parametrize("hidden", [(128, 64), (16,), (32, 16, 8)])
def test_lstm_ae_reconstructs_window_shape(hidden):
    model = build_model(ModelConfig(model="lstm_ae", lookback=7, hidden_sizes=hidden), 5).eval()
    assert model(torch.randn(3, 7, 5)).shape == (3, 7, 5)
    assert all(l.batch_first for l in [*model.encoder, *model.decoder])
    assert [l.hidden_size for l in model.encoder] == list(hidden)
    assert [l.hidden_size for l in model.decoder] == [*reversed(hidden)]


def test_lstm_ae_recurs_over_time_not_over_the_batch():
    # the ancestor's bug (batch-first data into batch_first=False layers) mixes samples of a batch:
    # with a correct model, each window's output depends on that window only.
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="lstm_ae", lookback=6, hidden_sizes=(8, 4)), 3).eval()
    x = torch.randn(10, 6, 3)
    perm = torch.randperm(10)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[perm], model(x[perm]))
        single = model(x[:1])
        torch.testing.assert_close(model(x)[:1], single)


def test_deepcnn_outputs_do_not_mix_batch_samples():
    torch.manual_seed(0)
    model = build_model(ModelConfig(lookback=8), 4).eval()
    x = torch.randn(9, 8, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[3:4], model(x[3:4]))


def test_registry_lookup_and_clash():
    assert {"deepcnn", "lstm_ae"} <= set(MODELS)
    assert MODELS["deepcnn"].kind == "forecast" and MODELS["lstm_ae"].kind == "reconstruct"
    with pytest.raises(ConfigError, match="Unknown model 'cnn'.*'deepcnn'"):
        build_model(ModelConfig(model="cnn"), 3)
    with pytest.raises(ConfigError, match="already registered"):
        register_model(MODELS["deepcnn"])


def test_register_custom_model():
    spec = ModelSpec("tiny_linear_test", "forecast", lambda n, c: torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(n * c.lookback, n)), 2, "test model")
    register_model(spec)
    try:
        model = build_model(ModelConfig(model="tiny_linear_test", lookback=3), 4)
        assert model(torch.randn(2, 3, 4)).shape == (2, 4)
    finally:
        del MODELS["tiny_linear_test"]
