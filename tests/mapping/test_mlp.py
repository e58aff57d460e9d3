"""MLPMapping on planted data: linear and nonlinear signal against ridge, pure noise at
chance with no test row reaching the fit, seeding, storage and argument checks.

Small sizes (300 training × 200 voxels → 32 targets, 100 test samples) and one torch
thread keep the file fast on a shared 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.evaluation import two_way_identification
from fmri2image.mapping import (
    MAPPERS,
    MLPMapping,
    RidgeMapping,
    fit_summary,
    get_mapper,
    load_mapping,
    save_mapping,
)
from fmri2image.mapping import _mlp as mlp_module

N_TRAIN, N_TEST, N_VOXELS, N_TARGETS, N_LATENT = 300, 100, 200, 32, 6
#: Fast settings shared by every fit (the architecture and loss stay the defaults).
FAST = {"device": "cpu", "threads": 1}


def latent_data(
    kind: str, *, seed: int = 0, snr: float = 1.0, noise: float = 0.5
) -> tuple[np.ndarray, ...]:
    """Voxels = a linear image of a 6-d latent ``z`` + noise; targets = a function of ``z``.

    ``"linear"``: ``Y = z @ B``.  ``"nonlinear"``: ``Y = |z @ W1| @ W2`` (centered), an
    even function of ``z``: its best linear approximation from the voxels is zero, so
    ridge is at chance while a network can learn it.  ``"noise"``: ``Y`` independent of
    everything.  Voxels get unequal offsets and scales, targets non-zero means.
    """
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    z = rng.standard_normal((n, N_LATENT))
    X = 3 * snr * z @ rng.standard_normal((N_LATENT, N_VOXELS)) / np.sqrt(N_LATENT)
    X += rng.standard_normal((n, N_VOXELS))
    if kind == "linear":
        Y = z @ rng.standard_normal((N_LATENT, N_TARGETS))
    elif kind == "nonlinear":
        H = np.abs(z @ rng.standard_normal((N_LATENT, 4 * N_LATENT)) / np.sqrt(N_LATENT))
        Y = (H - H.mean(axis=0)) @ rng.standard_normal((4 * N_LATENT, N_TARGETS))
    else:
        Y = rng.standard_normal((n, N_TARGETS))
    Y = Y / Y.std() + noise * rng.standard_normal((n, N_TARGETS))
    X = X * rng.uniform(0.5, 2, N_VOXELS) + rng.uniform(-1, 1, N_VOXELS)
    Y = Y + rng.uniform(0, 3, N_TARGETS)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    return X[:N_TRAIN], Y[:N_TRAIN], X[N_TRAIN:], Y[N_TRAIN:]


def identification(model, X_test, Y_test) -> float:
    return float(two_way_identification(Y_test, model.predict(X_test)).mean())


@pytest.fixture(scope="module")
def linear():
    return latent_data("linear", seed=1, snr=0.25, noise=1.5)


@pytest.fixture(scope="module")
def fitted(linear):
    X, Y, _, _ = linear
    return MLPMapping(max_epochs=8, **FAST).fit(X, Y)


# ------------------------------------------------------------- planted signal
def test_linear_signal_matches_ridge(linear):
    X, Y, X_te, Y_te = linear
    ridge = identification(RidgeMapping().fit(X, Y), X_te, Y_te)
    mlp = identification(MLPMapping(**FAST).fit(X, Y), X_te, Y_te)
    assert 0.6 < ridge < 0.97  # a signal neither absent nor trivially identified
    assert mlp >= ridge - 0.03, (mlp, ridge)


def test_nonlinear_signal_beats_ridge():
    X, Y, X_te, Y_te = latent_data("nonlinear", seed=2)
    ridge = identification(RidgeMapping().fit(X, Y), X_te, Y_te)
    mlp = identification(MLPMapping(**FAST).fit(X, Y), X_te, Y_te)
    assert abs(ridge - 0.5) < 0.08  # |.| is even: no linear signal
    assert mlp >= ridge + 0.15, (mlp, ridge)


def test_noise_is_chance_and_fit_sees_no_test_row(monkeypatch):
    """Training rows carry no signal; test rows carry a strong one (``Y = X @ B``), so
    any test information reaching the fit (statistics, early stopping, predict-time
    batch effects) would lift identification above chance."""
    X, Y, _, _ = latent_data("noise", seed=3)
    rng = np.random.default_rng(4)
    X_te = rng.standard_normal((N_TEST, N_VOXELS)).astype(np.float32)
    Y_te = (X_te[:, :10] @ rng.standard_normal((10, N_TARGETS))).astype(np.float32)
    seen = {}
    real_train = MLPMapping._train

    def spy(self, net, Xz, Yz, train, val, rng, device):
        seen.update(Xz=Xz.copy(), train=train.copy(), val=val.copy())
        return real_train(self, net, Xz, Yz, train, val, rng, device)

    monkeypatch.setattr(MLPMapping, "_train", spy)
    model = MLPMapping(**FAST).fit(X, Y)
    # The loop got exactly the fit's rows, split into disjoint train / validation parts.
    assert seen["Xz"].shape == X.shape
    assert np.intersect1d(seen["train"], seen["val"]).size == 0
    assert np.union1d(seen["train"], seen["val"]).tolist() == list(range(N_TRAIN))
    assert len(seen["val"]) == round(0.1 * N_TRAIN)
    # Standardization used the trained-on rows only (not even the validation rows).
    np.testing.assert_allclose(model.x_mean_, X[seen["train"]].mean(axis=0), rtol=1e-5, atol=1e-5)
    z_test = (X_te - model.x_mean_) / model.x_scale_
    gaps = ((z_test[:, None, :] - seen["Xz"][None, :, :]) ** 2).sum(axis=-1)
    assert gaps.min() > 1.0  # no test row among the rows trained or validated on
    score = identification(model, X_te, Y_te)
    assert abs(score - 0.5) < 0.08, score
    # Each row's prediction depends on that row alone.
    full = model.predict(X_te)
    np.testing.assert_allclose(model.predict(X_te[:1]), full[:1], rtol=1e-5, atol=1e-5)
    mixed = model.predict(np.concatenate([X_te[::-1], X[:7]]))
    np.testing.assert_allclose(mixed[:N_TEST], full[::-1], rtol=1e-5, atol=1e-5)


def test_contrastive_weight_zero_is_pure_mse(linear, monkeypatch):
    X, Y, X_te, Y_te = linear
    calls = []
    monkeypatch.setattr(mlp_module, "_contrastive", lambda *a: calls.append(1))
    monkeypatch.setattr(mlp_module, "_bimixco", lambda *a: calls.append(1))
    model = MLPMapping(contrastive_weight=0.0, **FAST).fit(X, Y)
    assert calls == []  # neither the contrastive loss nor the mixup ran
    assert identification(model, X_te, Y_te) > 0.6


def test_loss_schedule_bimixco_then_softclip(linear, monkeypatch):
    X, Y, _, _ = linear
    temps: list[tuple[float, bool]] = []
    real = mlp_module._contrastive

    def spy(pred, target, temp, labels):
        if pred.requires_grad:  # training steps, not the validation loss
            temps.append((temp, labels is not None))
        return real(pred, target, temp, labels)

    monkeypatch.setattr(mlp_module, "_contrastive", spy)
    MLPMapping(max_epochs=9, validation_fraction=0.0, batch_size=300, **FAST).fit(X, Y)
    assert len(temps) == 9  # one step per epoch
    assert all(mixed and t == mlp_module.BIMIXCO_TEMPERATURE for t, mixed in temps[:3])
    soft = [t for t, mixed in temps[3:]]
    assert not any(mixed for _, mixed in temps[3:])
    assert soft[0] == pytest.approx(0.004) and soft[-1] == pytest.approx(0.0075)
    assert soft == sorted(soft)


# ---------------------------------------------------------- training control
def test_same_seed_identical_other_seed_different(linear):
    X, Y, X_te, _ = linear
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002
    a = MLPMapping(max_epochs=4, random_state=7, **FAST).fit(X, Y).predict(X_te)
    b = MLPMapping(max_epochs=4, random_state=7, **FAST).fit(X, Y).predict(X_te)
    c = MLPMapping(max_epochs=4, random_state=8, **FAST).fit(X, Y).predict(X_te)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # The global random states are left as they were.
    assert torch.equal(torch.get_rng_state(), torch_state)
    np_after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(u, v) for u, v in zip(np_after, np_state))


def test_validation_holds_out_whole_groups(linear, monkeypatch):
    X, Y, _, _ = linear
    groups = np.repeat(np.arange(30), 10)
    seen = {}
    real_train = MLPMapping._train

    def spy(self, net, Xz, Yz, train, val, rng, device):
        seen.update(train=train, val=val)
        return real_train(self, net, Xz, Yz, train, val, rng, device)

    monkeypatch.setattr(MLPMapping, "_train", spy)
    MLPMapping(max_epochs=2, validation_fraction=0.2, **FAST).fit(X, Y, groups=groups)
    held = np.unique(groups[seen["val"]])
    assert held.size == 6
    assert not np.isin(groups[seen["train"]], held).any()


def test_early_stopping_restores_best_epoch_and_history(fitted):
    h = fitted.history_
    assert 1 <= h["best_epoch"] <= h["epochs_run"] <= 8
    assert h["best_validation_loss"] == min(h["validation_loss"])
    assert h["validation_loss"][h["best_epoch"] - 1] == h["best_validation_loss"]
    assert len(h["train_loss"]) == h["epochs_run"] and h["seconds"] > 0
    assert (h["n_train"], h["n_validation"]) == (270, 30)
    summary = fit_summary(fitted)
    assert summary["mapper"] == "MLPMapping" and summary["alpha_median"] is None
    assert summary["history"]["best_epoch"] == h["best_epoch"]
    json.dumps(summary, allow_nan=False)


def test_fit_summary_of_ridge_is_unchanged(linear):
    X, Y, _, _ = linear
    summary = fit_summary(RidgeMapping(alphas=[1.0, 10.0], cv=2).fit(X[:60], Y[:60]))
    assert "history" not in summary and "diagnostics" in summary
    assert summary["alpha_median"] is not None


def test_no_validation_trains_all_epochs(linear):
    X, Y, _, _ = linear
    model = MLPMapping(max_epochs=3, validation_fraction=0.0, **FAST).fit(X, Y)
    h = model.history_
    assert h["epochs_run"] == h["best_epoch"] == 3 and h["best_validation_loss"] is None
    assert h["n_train"] == N_TRAIN


def test_predict_shapes_dtypes_and_bfloat16(linear, fitted):
    X, Y, X_te, _ = linear
    pred = fitted.predict(X_te)
    assert pred.shape == (N_TEST, N_TARGETS) and pred.dtype == np.float32
    assert fitted.hidden_ == 256  # "auto": a quarter of 200 voxels, at least 256
    one = MLPMapping(max_epochs=2, dtype="bfloat16", **FAST).fit(X, Y[:, 0])
    assert one.predict(X_te).shape == (N_TEST,)
    assert np.all(np.isfinite(one.predict(X_te)))
    with pytest.raises(DataFormatError, match="features"):
        fitted.predict(X_te[:, :-1])


# -------------------------------------------------------------------- storage
def test_round_trip_and_registry(linear, fitted, tmp_path):
    _, _, X_te, _ = linear
    assert "mlp" in MAPPERS
    assert isinstance(get_mapper("mlp", hidden=64), MLPMapping)
    folder = save_mapping(fitted, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    assert config["format"] == "fmri2image.mapping/mlp"
    assert config["fitted"]["history_"]["epochs_run"] == fitted.history_["epochs_run"]
    loaded = load_mapping(folder)
    assert isinstance(loaded, MLPMapping)
    assert np.array_equal(loaded.predict(X_te), fitted.predict(X_te))
    assert loaded.get_params() == fitted.get_params()


def test_mismatched_state_is_a_data_format_error(fitted, tmp_path):
    folder = save_mapping(fitted, tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["fitted"]["hidden_"] = 128  # no longer the saved weights' width
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataFormatError, match="wrong shape"):
        load_mapping(folder)
    tensors, fitted_json = fitted._save_state()
    params = fitted._save_params()
    for broken in (
        {k: v for k, v in tensors.items() if k != "net.head.weight"},
        {**tensors, "net.extra": np.zeros(3, np.float32)},
        {**tensors, "y_scale": tensors["y_scale"][:-1]},
    ):
        with pytest.raises(DataFormatError):
            MLPMapping._load_state(params, broken, fitted_json)
    with pytest.raises(DataFormatError, match="sizes"):
        MLPMapping._load_state(params, tensors, {})


# --------------------------------------------------------------------- checks
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hidden", 0),
        ("hidden", "big"),
        ("hidden", 512.0),
        ("n_blocks", -1),
        ("n_blocks", True),
        ("dropout", 1.0),
        ("dropout", True),
        ("contrastive_weight", -0.1),
        ("contrastive_weight", float("nan")),
        ("bimixco_fraction", 1.5),
        ("max_epochs", 10.0),
        ("max_epochs", 0),
        ("patience", 0),
        ("batch_size", 1),
        ("learning_rate", 0),
        ("learning_rate", "1e-3"),
        ("weight_decay", -1),
        ("validation_fraction", 1.0),
        ("validation_fraction", -0.1),
        ("random_state", None),
        ("random_state", -1),
        ("random_state", 1.5),
        ("device", "gpu"),
        ("device", "cuda:x"),
        ("dtype", "float16"),
        ("threads", 0),
        ("threads", 1.0),
    ],
)
def test_check_params_refuses(name, value):
    with pytest.raises(ConfigError, match=name):
        MLPMapping(**{name: value}).check_params()


def test_check_params_with_sizes():
    MLPMapping().check_params(1200, 4500, 150)
    with pytest.raises(ConfigError, match="validation_fraction"):
        MLPMapping(validation_fraction=0.01).check_params(100, 50)  # 1 validation sample
    with pytest.raises(ConfigError, match="validation_fraction"):
        MLPMapping(validation_fraction=0.1).check_params(100, 50, n_groups=4)  # 0 groups
    MLPMapping(validation_fraction=0.0).check_params(3, 50)


def test_fit_refuses_bad_data_and_unavailable_cuda(linear, monkeypatch):
    X, Y, _, _ = linear
    with pytest.raises(DataFormatError, match="aligned"):
        MLPMapping(**FAST).fit(X, Y[:-1])
    with pytest.raises(DataFormatError, match="groups"):
        MLPMapping(**FAST).fit(X, Y, groups=np.zeros(5))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="CUDA"):
        MLPMapping(device="cuda").fit(X, Y)


def test_import_does_not_load_torch():
    code = (
        "import sys; from fmri2image.mapping import MLPMapping; "
        "MLPMapping().check_params(1200, 4500); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
