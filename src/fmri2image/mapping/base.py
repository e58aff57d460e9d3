"""The mapping-model contract and registry: what every brain→embedding mapper is.

A *mapper* learns ``X`` (n_samples, n_voxels) → ``Y`` (n_samples, n_targets) from
training rows and predicts embeddings for new rows.  :class:`Mapper` states the
contract; :data:`MAPPERS` names the implementations (:class:`RidgeMapping` is
``"ridge"``); :func:`~fmri2image.mapping.save_mapping` and
:func:`~fmri2image.mapping.load_mapping` store any registered mapper as
``mapping.safetensors`` + ``config.json`` (no pickle), the config's ``format``
naming the registry entry (``"fmri2image.mapping/ridge"``).

Adding a mapper is one file and one registry line.  The file (say
``fmri2image/mapping/_mean.py``) defines the class::

    import numpy as np
    from sklearn.base import BaseEstimator

    from fmri2image.mapping.base import Mapper


    class MeanMapping(BaseEstimator, Mapper):
        '''Predicts the training mean of every target (a chance-level baseline).'''

        format_name = "mean"

        def __init__(self, *, shrink: float = 1.0) -> None:
            self.shrink = shrink  # constructor arguments are stored unchanged

        def fit(self, X, Y, groups=None):
            self.y_mean_ = self.shrink * np.asarray(Y, dtype=float).mean(axis=0)
            return self

        def predict(self, X):
            return np.tile(self.y_mean_, (len(X), 1))

        def _save_state(self):
            return {"y_mean_": self.y_mean_}, {}

and the registry line (below, beside ``"ridge"``, or in the file itself)::

    register_mapper("mean", "fmri2image.mapping._mean:MeanMapping")

A ``"module:Class"`` string is imported on first use, so listing
:data:`MAPPERS` stays cheap; a class object may be registered directly too
(``register_mapper("mean", MeanMapping)``).  Then ``get_mapper("mean",
shrink=0.5)`` builds one and ``save_mapping`` / ``load_mapping`` round-trip it.
"""

from __future__ import annotations

import abc
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from fmri2image.errors import ConfigError, DataFormatError
from fmri2image.registry import ENTRY_POINT_GROUPS, Needs, Registry, import_target

__all__ = [
    "MAPPERS",
    "Mapper",
    "MapperEntry",
    "get_mapper",
    "mapper_class",
    "register_mapper",
]


class Mapper(abc.ABC):
    """Contract of a brain→embedding mapping model (scikit-learn estimator style).

    Subclasses follow scikit-learn's conventions: ``__init__`` only stores its
    (keyword) arguments under their own names, ``fit`` learns attributes whose
    names end in ``_``, and ``get_params`` returns the constructor arguments
    (inherit :class:`sklearn.base.BaseEstimator` *before* :class:`Mapper` to get
    scikit-learn's version; the default here follows the same rule).

    A new mapper must provide:

    ``format_name`` : str (class attribute)
        Its :data:`MAPPERS` name, which is also written in saved files
        (``"fmri2image.mapping/<format_name>"``).  :func:`register_mapper` checks
        that the two agree.
    :meth:`fit` and :meth:`predict`
        Learn from training rows only; predict each row from that row alone.
    :meth:`check_params` (recommended)
        Refuse bad constructor arguments before any data is read.
    :meth:`_save_state`
        The fitted state as arrays and JSON values.

    and may override :meth:`_save_params` (constructor arguments that are not
    JSON values) and :meth:`_load_state` (attribute names that differ from the
    saved keys, validation of a loaded state).

    Attributes
    ----------
    format_name : str
        Registry and file-format name of the class.
    """

    format_name: ClassVar[str] = ""

    @abc.abstractmethod
    def fit(self, X: Any, Y: Any, groups: Any = None) -> Mapper:
        """Learn the map from training samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            Training fMRI patterns.
        Y : array-like of shape (n_samples, n_targets)
            Training embeddings, one row per row of ``X``.
        groups : array-like of shape (n_samples,), optional
            Group label per sample (e.g. stimulus category), for mappers whose
            internal validation honours groups; others may ignore it.

        Returns
        -------
        self : Mapper
        """

    @abc.abstractmethod
    def predict(self, X: Any) -> np.ndarray:
        """Predict embeddings.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_voxels)
            fMRI patterns, preprocessed like the training data.

        Returns
        -------
        Y_pred : ndarray of shape (n_samples, n_targets)
            (A mapper fitted on 1-D ``Y`` may return shape (n_samples,).)
        """

    def check_params(
        self,
        n_samples: int | None = None,
        n_features: int | None = None,
        n_groups: int | None = None,
    ) -> None:
        """Refuse constructor arguments that cannot work, before any data is read.

        The pipeline calls it once the configuration is parsed (no sizes), and again
        with the sizes of each subject × ROI while the run is planned, before any
        stage runs: a bad ``mapping.options`` value stops the run in seconds with one
        message instead of failing (or being silently coerced) after the features
        are computed.  :meth:`fit` should call it too.  The default accepts
        everything; override it to check types and ranges.

        Parameters
        ----------
        n_samples, n_features : int, optional
            Training samples and voxels the mapper will be fitted on, when known.
        n_groups : int, optional
            Distinct groups in ``fit``'s ``groups``, when groups will be passed.

        Raises
        ------
        ConfigError
            Naming the argument, the value given and what it accepts.
        """
        return None  # the default: every argument the constructor took is accepted

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments as ``{name: value}`` (scikit-learn's contract).

        Parameters
        ----------
        deep : bool, default=True
            Accepted for scikit-learn compatibility; nested estimators are not
            expanded by this default implementation.

        Returns
        -------
        params : dict
        """
        sig = inspect.signature(type(self).__init__)
        skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return {
            name: getattr(self, name)
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in skip
        }

    @abc.abstractmethod
    def _save_state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The fitted state, for :func:`~fmri2image.mapping.save_mapping`.

        Raises :class:`sklearn.exceptions.NotFittedError` (or another error) when
        the mapper is not fitted.

        Returns
        -------
        tensors : dict of str to ndarray
            Numeric arrays (written to ``mapping.safetensors``).
        fitted : dict of str to JSON value
            Fitted scalars, strings, lists, dicts (written to ``config.json``).
        """

    def _save_params(self) -> dict[str, Any]:
        """Constructor arguments as JSON values (``config.json``'s ``params``).

        The default is ``get_params(deep=False)`` with numpy scalars made Python
        numbers; it refuses values JSON cannot hold.  Override it for arguments
        that are arrays or objects (store arrays in :meth:`_save_state` instead).

        Returns
        -------
        params : dict of str to JSON value
        """
        params = {
            k: v.item() if isinstance(v, np.generic) else v
            for k, v in self.get_params(deep=False).items()
        }
        try:
            json.dumps(params, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{type(self).__name__} has constructor arguments that JSON cannot hold "
                f"({exc}); override {type(self).__name__}._save_params to record them as "
                "numbers, strings or lists (arrays belong in _save_state)."
            ) from exc
        return params

    @classmethod
    def _load_state(
        cls,
        params: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        fitted: Mapping[str, Any],
    ) -> Mapper:
        """Rebuild a fitted mapper from what :meth:`_save_state` returned.

        The default calls ``cls(**params)`` and sets every tensor and fitted value
        as an attribute of the same name.  Override it when the saved keys are not
        attribute names, or to validate shapes (raise
        :class:`~fmri2image.errors.DataFormatError`).

        Parameters
        ----------
        params : mapping
            ``config.json``'s ``params`` (what :meth:`_save_params` returned).
        tensors : mapping of str to ndarray
            The arrays of ``mapping.safetensors``.
        fitted : mapping
            ``config.json``'s ``fitted``.

        Returns
        -------
        model : Mapper
            Fitted: ``predict`` works immediately.
        """
        model = cls(**dict(params))
        for key, value in {**tensors, **fitted}.items():
            setattr(model, key, value)
        return model


def check_data(A: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """scikit-learn's input validation of a data matrix, as a :class:`DataFormatError`
    that says what to pass (for every mapper's ``fit`` and ``predict``)."""
    from sklearn.utils.validation import check_array

    try:
        return check_array(A, dtype=dtype, input_name=name)
    except ValueError as exc:
        raise DataFormatError(
            f"{name} is not a usable data matrix: {exc} Pass a dense, finite, real 2-D "
            "array (n_samples, n_columns); drop or impute voxels with missing values."
        ) from exc


# ------------------------------------------------------------------- registry
@dataclass(frozen=True)
class MapperEntry:
    """A :data:`MAPPERS` entry: a mapper class, or where to import it from.

    Attributes
    ----------
    name : str
        The registry (and format) name.
    target : type or str
        The class, or ``"package.module:ClassName"`` imported on first use.
    needs : Needs
        What it needs beyond fmri2image's core (an extra, packages, a GPU).
    """

    name: str
    target: type[Mapper] | str
    needs: Needs = field(default_factory=Needs)

    def load(self) -> type[Mapper]:
        """The mapper class (imported now if registered by path)."""
        cls = import_target(self.target) if isinstance(self.target, str) else self.target
        _check_mapper_class(self.name, cls)
        return cls


def _check_mapper_class(name: str, cls: Any) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Mapper)):
        raise ConfigError(
            f"mapping model {name!r} must be a subclass of fmri2image.mapping.Mapper, got {cls!r}."
        )
    if cls.format_name != name:
        raise ConfigError(
            f"{cls.__name__}.format_name is {cls.format_name!r} but it is registered as "
            f"{name!r}; set format_name = {name!r} in the class (saved files name it)."
        )


#: Saved files name their mapper as ``FORMAT_PREFIX + name``.
FORMAT_PREFIX = "fmri2image.mapping/"


def _plugin(name: str, obj: Any) -> None:
    register_mapper(name, obj)


#: Registry of mapping models: ``get_mapper(name, **params)`` builds one.  Plugins
#: register through the ``fmri2image.mappers`` entry points (object: the class).
MAPPERS: Registry[MapperEntry] = Registry(
    "mapping model", group=ENTRY_POINT_GROUPS["mapping model"], plugin=_plugin
)


def register_mapper(
    name: str, cls: type[Mapper] | str, *, needs: Needs | None = None, overwrite: bool = False
) -> MapperEntry:
    """Add a mapping model to :data:`MAPPERS`.

    Parameters
    ----------
    name : str
        Registry name, equal to the class's ``format_name``; no ``":"`` or ``"/"``.
    cls : type or str
        A :class:`Mapper` subclass (the object of an ``fmri2image.mappers`` entry
        point), or ``"package.module:ClassName"`` to import it only when first used
        (keeps listing the registry cheap).
    needs : Needs, optional
        Default: the class's ``needs`` attribute, else nothing beyond the core.
    overwrite : bool, default=False
        Replace an existing entry of the same name.

    Returns
    -------
    MapperEntry
    """
    if not name or ":" in name or "/" in name:
        raise ConfigError(f"mapping model name {name!r} must be non-empty, without ':' or '/'.")
    if isinstance(cls, str):
        if ":" not in cls:
            raise ConfigError(
                f"mapping model {name!r}: {cls!r} must be 'package.module:ClassName'."
            )
    else:
        _check_mapper_class(name, cls)
    if needs is None:
        needs = getattr(cls, "needs", None)
        needs = needs if isinstance(needs, Needs) else Needs()
    entry = MapperEntry(name, cls, needs)
    MAPPERS.register(name, entry, overwrite=overwrite)
    return entry


def mapper_class(name: str) -> type[Mapper]:
    """The class registered as ``name`` (ConfigError with close matches if unknown)."""
    return MAPPERS.get(name).load()


def get_mapper(name: str, **params: Any) -> Mapper:
    """Build an unfitted mapper by registry name.

    Parameters
    ----------
    name : str
        A :data:`MAPPERS` name, e.g. ``"ridge"``.
    **params
        Constructor arguments, e.g. ``get_mapper("ridge", cv=5)``.

    Returns
    -------
    Mapper
    """
    cls = mapper_class(name)
    try:
        inspect.signature(cls).bind(**params)
    except TypeError as exc:
        raise ConfigError(f"mapping model {name!r} does not accept these options: {exc}.") from exc
    return cls(**params)


def _format_of(name: str) -> str:
    return f"{FORMAT_PREFIX}{name}"


def _name_of(fmt: Any) -> str | None:
    """The registry name in a ``format`` field, or None if it is not a mapper format."""
    if isinstance(fmt, str) and fmt.startswith(FORMAT_PREFIX):
        return fmt[len(FORMAT_PREFIX) :]
    return None


def _unknown_format(fmt: Any, where: str) -> DataFormatError:
    known = ", ".join(repr(_format_of(n)) for n in MAPPERS.names()) or "(none)"
    return DataFormatError(
        f"{where} has format {fmt!r}, which no registered mapping model reads; known formats: "
        f"{known}. It was written by another program, or by a mapper that must be registered "
        "(fmri2image.mapping.register_mapper) before loading."
    )


# Built-in mapping models: one line each.
register_mapper("ridge", "fmri2image.mapping._ridge:RidgeMapping")
register_mapper("mlp", "fmri2image.mapping._mlp:MLPMapping")
