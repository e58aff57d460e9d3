"""A MindEye-style residual MLP from voxels to embeddings (``get_mapper("mlp")``).

The network, loss schedule and optimizer follow MindEye (Scotti et al., 2023,
``MedARC-AI/fMRI-reconstruction-NSD``, ``src/Train_MindEye.py`` and ``src/utils.py``)
scaled down to GOD's size (about 1,200 training samples instead of NSD's ~9,000):

* backbone: ``Linear(n_voxels, hidden) -> LayerNorm -> GELU -> Dropout``, then
  ``n_blocks`` residual blocks ``h + Dropout(GELU(LayerNorm(Linear(h))))``, then a
  linear head ``hidden -> n_targets``;
* loss: mean squared error on standardized targets plus ``contrastive_weight`` times
  a contrastive term: BiMixCo (mixup of the voxel inputs within the batch, with a
  bidirectional soft-label CLIP loss whose labels are the mixing weights) for the
  first ``bimixco_fraction`` of the epochs, SoftCLIP (the targets' own cosine
  similarities, softmaxed, as labels) for the rest;
* AdamW (no decay on biases and LayerNorm parameters) with a one-cycle learning rate,
  early stopping on a validation split of the training rows, best weights restored.

torch is imported inside the methods, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.mapping._cv import fit_scaler
from fmri2image.mapping.base import Mapper, check_data

__all__ = [
    "BIMIXCO_BETA",
    "BIMIXCO_SELECT",
    "BIMIXCO_TEMPERATURE",
    "SOFTCLIP_TEMPERATURES",
    "MLPMapping",
]

logger = logging.getLogger(__name__)

#: BiMixCo's temperature: MindEye's ``mixco_nce(..., temp=.006)``.
BIMIXCO_TEMPERATURE = 0.006
#: SoftCLIP's temperature, cosine-annealed from the first to the second value over
#: the SoftCLIP epochs: MindEye's ``cosine_anneal(0.004, 0.0075, ...)``.
SOFTCLIP_TEMPERATURES = (0.004, 0.0075)
#: Mixing weights are drawn from Beta(0.15, 0.15) (mostly near 0 or 1), as MindEye's ``mixco``.
BIMIXCO_BETA = 0.15
#: Share of each batch's samples that are mixed (MindEye's ``s_thresh=0.5``).
BIMIXCO_SELECT = 0.5
#: ``OneCycleLR``'s ``final_div_factor`` (MindEye's).
FINAL_DIV_FACTOR = 1000.0
#: Rows per forward pass in :meth:`MLPMapping.predict`.
PREDICT_BATCH = 1024
#: "auto" hidden width: a quarter of the voxels, rounded to 64, within these bounds
#: (docs/mapping.md, "The MLP mapper": the measurements behind it).
AUTO_HIDDEN_MIN, AUTO_HIDDEN_MAX = 256, 1024
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating))
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
    )


class MLPMapping(RegressorMixin, BaseEstimator, Mapper):
    """Residual MLP from voxels to embeddings, trained with MSE + MindEye's contrastive losses.

    Voxels and targets are z-scored with the statistics of the rows the network is
    trained on (the training rows minus the validation split); predictions are mapped
    back to the original target units.  Every statistic, the early stopping and the
    validation split come from the rows passed to :meth:`fit`; :meth:`predict`
    estimates nothing and predicts each row from that row alone (eval mode: no
    dropout, LayerNorm works per row).

    Parameters
    ----------
    hidden : int or "auto", default="auto"
        Width of the hidden layers. ``"auto"``: a quarter of the voxels rounded to a
        multiple of 64, between 256 and 1024 (1024 for GOD's ~4,500 voxels).
    n_blocks : int, default=2
        Residual blocks after the input layer (MindEye: 4 blocks of 4096 on ~9,000
        NSD samples).
    dropout : float, default=0.3
        Dropout probability after every hidden layer, in [0, 1).
    contrastive_weight : float, default=0.03
        Weight of the contrastive term added to the MSE; 0 trains on the MSE alone
        (no mixup either). 0.03 identified best on planted data; 0.3 and more hurt.
    bimixco_fraction : float, default=1/3
        Share of ``max_epochs`` trained with BiMixCo before switching to SoftCLIP
        (MindEye's ``mixup_pct=.33``).
    max_epochs : int, default=30
        Epochs of the one-cycle schedule (training stops earlier when the
        validation loss stops improving).
    patience : int, default=5
        Epochs without a lower validation loss before stopping.
    batch_size : int, default=64
        Training samples per step (at least 2: the contrastive loss compares the
        samples of a batch).
    learning_rate : float, default=3e-2
        Peak learning rate of the one-cycle schedule (MindEye's 3e-4 trains a far
        larger network for 240 epochs; here 1e-2 to 1e-1 identified best and 3e-4 to
        1e-3 had not converged in 30 epochs).
    weight_decay : float, default=0.01
        AdamW weight decay of the weight matrices (MindEye's 1e-2); biases and
        LayerNorm parameters are not decayed.
    validation_fraction : float, default=0.1
        Share of the training rows held out for early stopping (whole groups when
        ``fit`` gets ``groups``); these rows are not trained on.  0 disables early
        stopping: all rows are trained on for ``max_epochs``.
    random_state : int, default=0
        Seed of the validation split, weight initialization, batch order, dropout and
        mixup. Two fits with the same seed on CPU give bit-identical predictions; the
        global random state of torch and numpy is left as it was.
    device : str, default="auto"
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when available).
    dtype : {"float32", "bfloat16"}, default="float32"
        Compute precision of the forward pass (``"bfloat16"``: autocast, weights and
        optimizer state kept in float32).
    threads : int, optional
        torch's CPU threads during :meth:`fit` and :meth:`predict` (restored after);
        None leaves torch's setting. On a CPU shared with other jobs, 1 thread was
        several times faster than 2 (docs/mapping.md, "The MLP mapper").

    Attributes
    ----------
    network_ : torch.nn.ModuleDict
        ``stem``, ``blocks``, ``head``; on ``device_``.
    hidden_ : int
        Hidden width used (``"auto"`` resolved).
    history_ : dict
        ``epochs_run``, ``best_epoch`` (1-based), ``best_validation_loss`` (None
        without validation), ``stopped_early``, ``seconds``, ``n_train``,
        ``n_validation``, per-epoch ``train_loss`` and ``validation_loss``.
    x_mean_, x_scale_ : ndarray of shape (n_features,)
    y_mean_, y_scale_ : ndarray of shape (n_targets,)
    n_features_in_ : int
    device_ : str
        Device the network sits on.

    Examples
    --------
    >>> import numpy as np
    >>> from fmri2image.mapping import MLPMapping
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((80, 50))
    >>> Y = np.abs(X[:, :4]) @ rng.standard_normal((4, 6))
    >>> model = MLPMapping(hidden=64, max_epochs=3, device="cpu").fit(X, Y)
    >>> model.predict(X[:2]).shape
    (2, 6)
    """

    #: Name in :data:`~fmri2image.mapping.MAPPERS` and in saved files.
    format_name = "mlp"

    def __init__(
        self,
        *,
        hidden: int | str = "auto",
        n_blocks: int = 2,
        dropout: float = 0.3,
        contrastive_weight: float = 0.03,
        bimixco_fraction: float = 1 / 3,
        max_epochs: int = 30,
        patience: int = 5,
        batch_size: int = 64,
        learning_rate: float = 3e-2,
        weight_decay: float = 0.01,
        validation_fraction: float = 0.1,
        random_state: int = 0,
        device: str = "auto",
        dtype: str = "float32",
        threads: int | None = None,
    ) -> None:
        self.hidden = hidden
        self.n_blocks = n_blocks
        self.dropout = dropout
        self.contrastive_weight = contrastive_weight
        self.bimixco_fraction = bimixco_fraction
        self.max_epochs = max_epochs
        self.patience = patience
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device
        self.dtype = dtype
        self.threads = threads

    # ------------------------------------------------------------------ checks
    def check_params(
        self,
        n_samples: int | None = None,
        n_features: int | None = None,
        n_groups: int | None = None,
    ) -> None:
        """Refuse arguments that cannot work (:meth:`Mapper.check_params`): the type
        and range of every constructor argument, and, given the data's sizes, a
        validation split that leaves fewer than 2 samples (or no group) on either
        side.  Nothing is coerced: ``max_epochs=10.0`` and ``dropout=True`` are refused."""
        h = self.hidden
        if not (h == "auto" if isinstance(h, str) else _is_int(h) and h >= 1):
            raise ConfigError(f"hidden={h!r} must be a positive integer or 'auto'.")
        for name, low in (("n_blocks", 0), ("max_epochs", 1), ("patience", 1), ("batch_size", 2)):
            value = getattr(self, name)
            if not (_is_int(value) and value >= low):
                raise ConfigError(f"{name}={value!r} must be an integer >= {low}.")
        ranges = {
            "dropout": (0.0, 1.0, "a number in [0, 1)"),
            "bimixco_fraction": (0.0, None, "a number in [0, 1]"),
            "contrastive_weight": (0.0, None, "a number >= 0 (0: MSE only)"),
            "weight_decay": (0.0, None, "a number >= 0"),
            "validation_fraction": (0.0, 1.0, "a number in [0, 1) (0: no early stopping)"),
        }
        for name, (low, high_open, accepted) in ranges.items():
            value = getattr(self, name)
            ok = _is_real(value) and value >= low
            if ok and high_open is not None:
                ok = value < high_open
            if ok and name == "bimixco_fraction":
                ok = value <= 1
            if not ok:
                raise ConfigError(f"{name}={value!r} must be {accepted}.")
        lr = self.learning_rate
        if not (_is_real(lr) and lr > 0):
            raise ConfigError(f"learning_rate={lr!r} must be a positive number (e.g. 1e-3).")
        rs = self.random_state
        if not (_is_int(rs) and 0 <= rs < 2**63):
            raise ConfigError(
                f"random_state={rs!r} must be a non-negative integer seed (fits with one seed "
                "are reproducible)."
            )
        dev = self.device
        if not isinstance(dev, str) or not (
            dev in DEVICES or (dev.startswith("cuda:") and dev[5:].isdigit())
        ):
            raise ConfigError(f"device={dev!r} must be one of {DEVICES} or 'cuda:N'.")
        th = self.threads
        if th is not None and not (_is_int(th) and th >= 1):
            raise ConfigError(f"threads={th!r} must be a positive integer or None.")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r} is not supported; use one of {DTYPES}.")
        if n_samples is not None:
            self._split_sizes(n_samples, n_groups)

    def _split_sizes(self, n_samples: int, n_groups: int | None) -> int:
        """Validation samples (or groups) to hold out; ConfigError if a side is too small."""
        f = float(self.validation_fraction)
        if f == 0:
            if n_samples < 2:
                raise ConfigError(f"MLPMapping needs at least 2 training samples; got {n_samples}.")
            return 0
        if n_groups is not None:
            n_val = round(f * n_groups)
            if not 1 <= n_val <= n_groups - 1:
                raise ConfigError(
                    f"validation_fraction={self.validation_fraction!r} of {n_groups} groups "
                    f"holds out {n_val} groups; early stopping needs at least one group on "
                    "each side: change validation_fraction, pass finer groups, or set it "
                    "to 0 (no early stopping)."
                )
            return n_val
        n_val = round(f * n_samples)
        if not 2 <= n_val <= n_samples - 2:
            raise ConfigError(
                f"validation_fraction={self.validation_fraction!r} of {n_samples} samples "
                f"holds out {n_val}; early stopping needs at least 2 samples on each side: "
                "change validation_fraction or set it to 0 (no early stopping)."
            )
        return n_val

    def _validation_split(
        self, n_samples: int, groups: np.ndarray | None, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """(train rows, validation rows), both sorted; whole groups when given."""
        if groups is None:
            n_val = self._split_sizes(n_samples, None)
            perm = rng.permutation(n_samples)
            val = np.sort(perm[:n_val])
        else:
            labels = np.unique(groups)
            n_val = self._split_sizes(n_samples, labels.size)
            if n_val == 0:
                val = np.empty(0, dtype=np.intp)
            else:
                held = rng.permutation(labels)[:n_val]
                val = np.flatnonzero(np.isin(groups, held))
                if not 2 <= val.size <= n_samples - 2:
                    raise ConfigError(
                        f"the {n_val} held-out groups hold {val.size} of {n_samples} samples; "
                        "early stopping needs at least 2 samples on each side: change "
                        "validation_fraction or set it to 0 (no early stopping)."
                    )
        train = np.setdiff1d(np.arange(n_samples), val)
        return train, val

    def _resolve_hidden(self, n_features: int) -> int:
        if self.hidden != "auto":
            return int(self.hidden)
        width = 64 * round(n_features / 4 / 64)
        return int(min(AUTO_HIDDEN_MAX, max(AUTO_HIDDEN_MIN, width)))

    def _resolve_device(self, *, strict: bool = True) -> str:
        import torch

        dev = self.device
        if dev == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if dev.startswith("cuda") and not torch.cuda.is_available():
            if not strict:
                return "cpu"
            raise ConfigError(
                f"device={dev!r} but torch sees no CUDA device; use device='cpu' or 'auto'."
            )
        return dev

    @staticmethod
    def _check_array(A: Any, name: str) -> np.ndarray:
        """The data as float32 (:func:`~fmri2image.mapping.base.check_data`)."""
        return check_data(A, name, np.float32)

    # --------------------------------------------------------------- fitting
    def fit(self, X: Any, Y: Any, groups: Any = None) -> MLPMapping:
        """Train the network on the training rows, early-stopped on a held-out part of them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            Training fMRI patterns.
        Y : array-like of shape (n_samples, n_targets) or (n_samples,)
            Training embeddings.
        groups : array-like of shape (n_samples,), optional
            Group label per sample (e.g. stimulus category): the validation split
            then holds out whole groups.

        Returns
        -------
        self : MLPMapping
        """
        import torch

        self.check_params()
        X = self._check_array(X, "X")
        if Y is None:
            raise DataFormatError(
                "MLPMapping requires Y: pass the training embeddings, one row per fMRI sample."
            )
        Y_arr = np.asarray(Y)
        y_1d = Y_arr.ndim == 1
        Y = self._check_array(Y_arr.reshape(-1, 1) if y_1d else Y_arr, "Y")
        n_samples, n_features = X.shape
        if Y.shape[0] != n_samples:
            raise DataFormatError(
                f"X has {n_samples} samples but Y has {Y.shape[0]}; they must be aligned "
                "row by row (one embedding per fMRI sample)."
            )
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (n_samples,):
                raise DataFormatError(
                    f"groups must have shape ({n_samples},), one label per sample; got "
                    f"{groups.shape}."
                )
        n_groups = None if groups is None else int(np.unique(groups).size)
        self.check_params(n_samples, n_features, n_groups)
        device = self._resolve_device()
        rng = np.random.default_rng(int(self.random_state))
        train, val = self._validation_split(n_samples, groups, rng)

        # Statistics of the rows trained on only (not even the validation rows).
        x_scaler = fit_scaler(X[train], scale=True)
        y_scaler = fit_scaler(Y[train], scale=True)
        Xz, Yz = x_scaler.transform(X), y_scaler.transform(Y)
        hidden = self._resolve_hidden(n_features)

        start = time.perf_counter()
        fork_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with _torch_threads(self.threads), torch.random.fork_rng(devices=fork_devices):
            torch.default_generator.manual_seed(int(self.random_state))
            for index in fork_devices:
                torch.cuda.default_generators[index].manual_seed(int(self.random_state))
            net = _build_network(
                n_features, hidden, int(self.n_blocks), float(self.dropout), Y.shape[1]
            )
            net = net.to(device)
            history = self._train(net, Xz, Yz, train, val, rng, device)
        history["seconds"] = round(time.perf_counter() - start, 3)
        net.eval()

        self.network_ = net
        self.hidden_ = hidden
        self.history_ = history
        self.x_mean_, self.x_scale_ = x_scaler.mean, x_scaler.scale
        self.y_mean_, self.y_scale_ = y_scaler.mean, y_scaler.scale
        self.n_features_in_ = n_features
        self.y_1d_ = y_1d
        self.device_ = device
        logger.debug(
            "mlp: %d epochs (best %d, validation loss %s) in %.1f s",
            history["epochs_run"],
            history["best_epoch"],
            history["best_validation_loss"],
            history["seconds"],
        )
        return self

    def _train(
        self,
        net: Any,
        Xz: np.ndarray,
        Yz: np.ndarray,
        train: np.ndarray,
        val: np.ndarray,
        rng: np.random.Generator,
        device: str,
    ) -> dict[str, Any]:
        """The training loop; returns the history (``net`` ends with its best weights)."""
        import torch

        X_tr = torch.from_numpy(np.ascontiguousarray(Xz[train])).to(device)
        Y_tr = torch.from_numpy(np.ascontiguousarray(Yz[train])).to(device)
        X_va = torch.from_numpy(np.ascontiguousarray(Xz[val])).to(device)
        Y_va = torch.from_numpy(np.ascontiguousarray(Yz[val])).to(device)
        n_train = len(train)
        n_batches = max(1, math.ceil(n_train / int(self.batch_size)))
        epochs = int(self.max_epochs)
        weight = float(self.contrastive_weight)
        n_mix = int(float(self.bimixco_fraction) * epochs) if weight > 0 else 0
        temps = _cosine_anneal(*SOFTCLIP_TEMPERATURES, epochs - n_mix)
        autocast = _autocast(device, self.dtype)

        decay = [p for p in net.parameters() if p.ndim >= 2]
        no_decay = [p for p in net.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": float(self.weight_decay)},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=float(self.learning_rate),
        )
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=float(self.learning_rate),
            total_steps=epochs * n_batches,
            pct_start=min(0.3, 2 / epochs),  # MindEye: 2 epochs of warm-up
            final_div_factor=FINAL_DIV_FACTOR,
        )
        history: dict[str, Any] = {
            "epochs_run": 0,
            "best_epoch": 0,
            "best_validation_loss": None,
            "stopped_early": False,
            "n_train": int(n_train),
            "n_validation": len(val),
            "train_loss": [],
            "validation_loss": [],
        }
        best_loss, best_state, waited = math.inf, None, 0
        for epoch in range(epochs):
            net.train()
            mixing = epoch < n_mix
            temp = BIMIXCO_TEMPERATURE if mixing else float(temps[epoch - n_mix])
            total = 0.0
            for rows in np.array_split(rng.permutation(n_train), n_batches):
                idx = torch.from_numpy(rows).to(device)
                xb, yb = X_tr[idx], Y_tr[idx]
                if mixing:
                    xb, y_mse, labels = _bimixco(xb, yb, rng)
                else:
                    y_mse, labels = yb, None
                with autocast:
                    pred = _forward(net, xb)
                pred = pred.float()
                loss = torch.mean((pred - y_mse) ** 2)
                if weight > 0:
                    loss = loss + weight * _contrastive(pred, yb, temp, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(rows)
            history["train_loss"].append(round(total / n_train, 6))
            history["epochs_run"] = epoch + 1
            if len(val) == 0:
                history["best_epoch"] = epoch + 1
                continue
            vloss = self._validation_loss(net, X_va, Y_va, autocast, weight)
            history["validation_loss"].append(round(vloss, 6))
            if vloss < best_loss:
                best_loss, waited = vloss, 0
                best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                history["best_epoch"] = epoch + 1
                history["best_validation_loss"] = round(vloss, 6)
            else:
                waited += 1
                if waited >= int(self.patience):
                    history["stopped_early"] = epoch + 1 < epochs
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        return history

    @staticmethod
    def _validation_loss(net: Any, X_va: Any, Y_va: Any, autocast: Any, weight: float) -> float:
        """MSE + weight x SoftCLIP at the final temperature: the same criterion every epoch."""
        import torch

        net.eval()
        with torch.no_grad():
            with autocast:
                pred = _forward(net, X_va)
            pred = pred.float()
            loss = torch.mean((pred - Y_va) ** 2)
            if weight > 0:
                loss = loss + weight * _contrastive(pred, Y_va, SOFTCLIP_TEMPERATURES[1], None)
        return float(loss)

    # ------------------------------------------------------------ predicting
    def predict(self, X: Any) -> np.ndarray:
        """Predict embeddings (eval mode, batched; each row from that row alone).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            fMRI patterns, preprocessed like the training data.

        Returns
        -------
        Y_pred : ndarray of shape (n_samples, n_targets), float32
            ((n_samples,) if fitted on 1-D ``Y``.)
        """
        import torch

        check_is_fitted(self, "network_")
        X = self._check_array(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise DataFormatError(
                f"X has {X.shape[1]} features, but MLPMapping is expecting "
                f"{self.n_features_in_} features as input: pass the same voxels (ROI, "
                "order) as in training."
            )
        Xz = ((X - self.x_mean_) / self.x_scale_).astype(np.float32, copy=False)
        net = self.network_
        net.eval()
        device = next(net.parameters()).device
        autocast = _autocast(device.type, self.dtype)
        out = []
        with _torch_threads(self.threads), torch.inference_mode():
            for s in range(0, len(Xz), PREDICT_BATCH):
                xb = torch.from_numpy(np.ascontiguousarray(Xz[s : s + PREDICT_BATCH])).to(device)
                with autocast:
                    pred = _forward(net, xb)
                out.append(pred.float().cpu().numpy())
        Yz = np.concatenate(out) if out else np.empty((0, self.y_mean_.size), np.float32)
        Y = (Yz * self.y_scale_ + self.y_mean_).astype(np.float32, copy=False)
        return Y[:, 0] if self.y_1d_ else Y

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"multioutput": True}

    @property
    def n_targets_(self) -> int:
        check_is_fitted(self, "network_")
        return int(self.y_mean_.size)

    # --------------------------------------------------------- serialization
    def _save_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays: the standardization statistics (``x_mean``, ``x_scale``, ``y_mean``,
        ``y_scale``) and the network's weights as ``net.<state_dict key>`` (float32);
        JSON: ``hidden_``, ``n_features_in_``, ``y_1d_``, ``history_``."""
        check_is_fitted(self, "network_")
        tensors = {
            "x_mean": np.asarray(self.x_mean_, dtype=np.float32),
            "x_scale": np.asarray(self.x_scale_, dtype=np.float32),
            "y_mean": np.asarray(self.y_mean_, dtype=np.float32),
            "y_scale": np.asarray(self.y_scale_, dtype=np.float32),
        }
        for key, value in self.network_.state_dict().items():
            tensors[f"net.{key}"] = value.detach().float().cpu().numpy()
        fitted = {
            "hidden_": int(self.hidden_),
            "n_features_in_": int(self.n_features_in_),
            "y_1d_": bool(self.y_1d_),
            "history_": dict(self.history_),
        }
        return tensors, fitted

    @classmethod
    def _load_state(
        cls,
        params: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        fitted: Mapping[str, Any],
    ) -> MLPMapping:
        """Rebuild the network from the saved sizes and check every array's shape.

        The network goes to ``device`` when it is available, else to the CPU.
        """
        import torch

        model = cls(**dict(params))
        try:
            model.check_params()
        except ConfigError as exc:
            raise DataFormatError(f"the saved MLPMapping has invalid parameters: {exc}") from exc
        hidden, n_features = fitted.get("hidden_"), fitted.get("n_features_in_")
        stats = ("x_mean", "x_scale", "y_mean", "y_scale")
        if not (_is_int(hidden) and _is_int(n_features)) or set(stats) - set(tensors):
            raise DataFormatError(
                "the saved MLPMapping lacks its sizes (hidden_, n_features_in_) or "
                f"standardization arrays {list(stats)}; save the mapping again."
            )
        n_targets = np.asarray(tensors["y_mean"]).size
        net = _build_network(
            int(n_features), int(hidden), int(model.n_blocks), float(model.dropout), n_targets
        )
        expected = net.state_dict()
        saved = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        wrong = sorted(
            k
            for k in set(expected) | set(saved)
            if k not in saved
            or k not in expected
            or tuple(saved[k].shape) != tuple(expected[k].shape)
        )
        shapes_ok = np.asarray(tensors["x_mean"]).shape == np.asarray(tensors["x_scale"]).shape == (
            n_features,
        ) and np.asarray(tensors["y_scale"]).shape == (n_targets,)
        if wrong or not shapes_ok:
            what = f"network arrays {wrong[:5]}" if wrong else "standardization arrays"
            raise DataFormatError(
                f"the saved MLPMapping does not fit its own sizes ({n_features} voxels, hidden "
                f"{hidden}, {model.n_blocks} blocks, {n_targets} targets): {what} are missing, "
                "unexpected or of the wrong shape. Save the mapping again."
            )
        net.load_state_dict(
            {k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in saved.items()}
        )
        device = model._resolve_device(strict=False)
        model.network_ = net.to(device).eval()
        model.device_ = device
        model.hidden_ = int(hidden)
        model.n_features_in_ = int(n_features)
        model.y_1d_ = bool(fitted.get("y_1d_", False))
        model.history_ = dict(fitted.get("history_") or {})
        model.x_mean_ = np.asarray(tensors["x_mean"], dtype=np.float32)
        model.x_scale_ = np.asarray(tensors["x_scale"], dtype=np.float32)
        model.y_mean_ = np.asarray(tensors["y_mean"], dtype=np.float32)
        model.y_scale_ = np.asarray(tensors["y_scale"], dtype=np.float32)
        return model


# ------------------------------------------------------------------ network
def _build_network(n_in: int, hidden: int, n_blocks: int, dropout: float, n_out: int) -> Any:
    """``ModuleDict(stem, blocks, head)`` of standard torch modules (see :func:`_forward`)."""
    from torch import nn

    def layer(n: int) -> Any:
        return nn.Sequential(
            nn.Linear(n, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)
        )

    return nn.ModuleDict(
        {
            "stem": layer(n_in),
            "blocks": nn.ModuleList([layer(hidden) for _ in range(n_blocks)]),
            "head": nn.Linear(hidden, n_out),
        }
    )


def _forward(net: Any, x: Any) -> Any:
    h = net["stem"](x)
    for block in net["blocks"]:
        h = h + block(h)
    return net["head"](h)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op CPU threads (process-global), then restore them."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _autocast(device_type: str, dtype: str) -> Any:
    import torch

    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type.split(":")[0], dtype=torch.bfloat16)


def _cosine_anneal(start: float, end: float, steps: int) -> np.ndarray:
    """``steps`` values from ``start`` to ``end`` along half a cosine (MindEye's ``cosine_anneal``)."""
    if steps <= 1:
        return np.full(max(steps, 0), start)
    t = np.arange(steps) / (steps - 1)
    return end + (start - end) / 2 * (1 + np.cos(np.pi * t))


def _bimixco(xb: Any, yb: Any, rng: np.random.Generator) -> tuple[Any, Any, Any]:
    """Mix a random half of the batch's inputs with a shuffled copy (MindEye's ``mixco``).

    Returns the mixed inputs, the equally mixed targets (for the MSE) and the soft
    labels ``labels[i, i] += beta_i``, ``labels[i, perm_i] += 1 - beta_i``.
    """
    import torch

    n = xb.shape[0]
    perm = rng.permutation(n)
    beta = rng.beta(BIMIXCO_BETA, BIMIXCO_BETA, size=n)
    beta[rng.random(n) > BIMIXCO_SELECT] = 1.0  # unselected samples stay unmixed
    labels = np.zeros((n, n), dtype=np.float32)
    labels[np.arange(n), np.arange(n)] += beta
    labels[np.arange(n), perm] += 1 - beta  # "+=": a sample mixed with itself keeps label 1
    b = torch.from_numpy(beta.astype(np.float32)).to(xb.device)[:, None]
    p = torch.from_numpy(perm).to(xb.device)
    x_mixed = b * xb + (1 - b) * xb[p]
    y_mixed = b * yb + (1 - b) * yb[p]
    return x_mixed, y_mixed, torch.from_numpy(labels).to(xb.device)


def _contrastive(pred: Any, target: Any, temp: float, labels: Any) -> Any:
    """Bidirectional soft-label CLIP loss between the batch's predictions and targets.

    ``labels`` given: BiMixCo (the mixing weights); None: SoftCLIP (softmax of the
    targets' cosine similarities at ``temp``).
    """
    from torch.nn import functional as F

    p = F.normalize(pred, dim=-1)
    t = F.normalize(target, dim=-1)
    logits = p @ t.T / temp
    if labels is None:
        labels = (t @ t.T / temp).softmax(-1)
    forward = -(logits.log_softmax(-1) * labels).sum(-1).mean()
    backward = -(logits.T.log_softmax(-1) * labels.T).sum(-1).mean()
    return (forward + backward) / 2
