"""Training the failure classifier, judging it against a baseline, and the model file the stream loads.

Pure functions over :class:`~transforms.maintenance.features.Example` rows, so the tests call them on
hand-made rows. The split is by time, never at random: the model is fitted on the earlier part of the
data and measured on a later range it has not seen, as it will be used; training rows are only those
whose horizon ends before the test range begins, so no label looks into it. The baseline is what a
maintenance crew would do without a model: ground a drone whose motor runs hotter than a threshold
(the one that gives the best F1 on the training range). A model that does not beat it on ROC AUC by
:data:`MIN_AUC_GAIN` on the later range is not saved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from transforms.contract import format_timestamp
from transforms.maintenance.features import BASELINE_FEATURE, FEATURES, Example

MIN_AUC_GAIN = 0.02
DEFAULT_TEST_SHARE = 0.3
DEFAULT_RISK_THRESHOLD = 0.5
MIN_FAILURES = 3  # in each of the training and the test range: fewer cannot be learnt from or measured
MODEL_FORMAT = "dronecop-maintenance-v1"


class TrainingError(ValueError):
    """The data cannot train or measure a model (too short, no failures in a range); one line for the user."""


class ModelFileError(ValueError):
    """A file that is not a maintenance model this code can use; one line for the user."""


@dataclass(frozen=True)
class Split:
    """Training rows (fitted on), test rows (measured on) and the moment between them."""

    train: list[Example]
    test: list[Example]
    cutoff_ms: int


def split_by_time(rows: Sequence[Example], test_share: float, horizon_ms: int) -> Split:
    """The last ``test_share`` of the time range is the test; training rows end ``horizon_ms`` before it.

    A training row at ``t`` is labelled by what happens until ``t + horizon``: only rows whose horizon ends
    by the cutoff keep the test range's failures out of the training labels.
    """
    if not rows:
        raise TrainingError("no training rows: the input holds no drone health")
    first, last = min(row.at_ms for row in rows), max(row.at_ms for row in rows)
    cutoff = first + round((last - first) * (1.0 - test_share))
    train = [row for row in rows if row.at_ms + horizon_ms <= cutoff]
    test = [row for row in rows if row.at_ms >= cutoff]
    for name, part in (("training", train), ("test", test)):
        failures = sum(row.fails for row in part)
        if failures < MIN_FAILURES or failures == len(part):
            raise TrainingError(
                f"the {name} range holds {len(part)} rows of which {failures} precede a failure: need at least "
                f"{MIN_FAILURES} of each; simulate or collect a longer history (or raise --wear_scale)"
            )
    return Split(train, test, cutoff)


def matrix(rows: Sequence[Example]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([row.features for row in rows], dtype=float), np.array([row.fails for row in rows], dtype=bool)


def fit(rows: Sequence[Example]) -> Any:
    """A histogram gradient-boosting classifier: it takes NaN features as missing, and trends need no scaling."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    features, labels = matrix(rows)
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=0).fit(features, labels)


def failure_risk(classifier: Any, features: np.ndarray) -> np.ndarray:
    """The probability of failure within the horizon, one per row of ``features``."""
    return classifier.predict_proba(features)[:, list(classifier.classes_).index(True)]


def measured(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision and recall of ``scores >= threshold``, and the ROC AUC of the scores."""
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    finite = np.where(np.isfinite(scores), scores, -np.inf)
    flagged = finite >= threshold
    return {
        "precision": round(float(precision_score(labels, flagged, zero_division=0)), 4),
        "recall": round(float(recall_score(labels, flagged, zero_division=0)), 4),
        "roc_auc": round(float(roc_auc_score(labels, np.nan_to_num(scores, nan=np.nanmin(scores) - 1))), 4),
    }


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold with the best F1 over ``labels``: how the baseline's temperature is chosen."""
    best, best_f1 = math.inf, -1.0
    for candidate in np.unique(scores[np.isfinite(scores)]):
        flagged = scores >= candidate
        hits = int(np.sum(flagged & labels))
        f1 = 2 * hits / (int(np.sum(flagged)) + int(np.sum(labels))) if hits else 0.0
        if f1 > best_f1:
            best, best_f1 = float(candidate), f1
    return best


def baseline_scores(rows: Sequence[Example]) -> np.ndarray:
    return matrix(rows)[0][:, FEATURES.index(BASELINE_FEATURE)]


def refusal(model: dict[str, float], baseline: dict[str, float]) -> str | None:
    """Why the model must not be saved, or None when it beats the baseline on the test range."""
    if model["roc_auc"] >= baseline["roc_auc"] + MIN_AUC_GAIN:
        return None
    return (
        f"the model's ROC AUC {model['roc_auc']:.3f} does not beat the temperature baseline's "
        f"{baseline['roc_auc']:.3f} by {MIN_AUC_GAIN}: not saved"
    )


def iso(ms: int) -> str:
    return format_timestamp(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


@dataclass(frozen=True)
class Settings:
    """How rows were made and split: the model file records them, and the stream scores alike."""

    window_minutes: int
    step_minutes: int
    horizon_minutes: int
    test_share: float = DEFAULT_TEST_SHARE
    risk_threshold: float = DEFAULT_RISK_THRESHOLD


def train_and_judge(rows: Sequence[Example], settings: Settings) -> tuple[dict[str, Any], Any]:
    """The report (ranges, counts, metrics, baseline, verdict) and the fitted classifier.

    The report's ``refused`` is None when the model beats the baseline, else why not.
    """
    split = split_by_time(rows, settings.test_share, settings.horizon_minutes * 60_000)
    classifier = fit(split.train)
    test_features, test_labels = matrix(split.test)
    train_labels = matrix(split.train)[1]
    model = measured(test_labels, failure_risk(classifier, test_features), settings.risk_threshold)
    temperature = best_threshold(train_labels, baseline_scores(split.train))
    baseline = measured(test_labels, baseline_scores(split.test), temperature)
    report = {
        "features": list(FEATURES),
        "window_minutes": settings.window_minutes,
        "step_minutes": settings.step_minutes,
        "horizon_minutes": settings.horizon_minutes,
        "risk_threshold": settings.risk_threshold,
        "training_range": [iso(min(r.at_ms for r in split.train)), iso(max(r.at_ms for r in split.train))],
        "test_range": [iso(split.cutoff_ms), iso(max(r.at_ms for r in split.test))],
        "rows": {"training": len(split.train), "test": len(split.test)},
        "failing_rows": {"training": int(train_labels.sum()), "test": int(test_labels.sum())},
        "drones": len({row.drone_id for row in rows}),
        "metrics": model,
        "baseline": {"rule": f"{BASELINE_FEATURE} >= {temperature:g}", **baseline},
    }
    report["refused"] = refusal(model, baseline)
    return report, classifier


class MaintenanceModel(dict):
    """What the model file holds: the classifier under ``classifier`` and, beside it, everything needed to use
    and trust it (features, window, step and horizon, training and test ranges, metrics, baseline).

    A dict to read, a class of its own because Beam's RunInference keeps the loaded model in a shared,
    weakly referenced handle, which a plain dict cannot be.
    """


def model_document(report: dict[str, Any], classifier: Any) -> MaintenanceModel:
    return MaintenanceModel(format=MODEL_FORMAT, classifier=classifier, **{k: v for k, v in report.items() if k != "refused"})


def checked_model(document: Any, source: str) -> MaintenanceModel:
    """``document`` if it is a maintenance model whose features are this code's; ModelFileError otherwise."""
    if not isinstance(document, MaintenanceModel) or document.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{source} is not a DroneCop maintenance model ({MODEL_FORMAT})")
    if document.get("features") != list(FEATURES):
        raise ModelFileError(
            f"{source} was trained on features {document.get('features')}, this code computes {list(FEATURES)}: train it again"
        )
    return document


def load_model(path: str) -> MaintenanceModel:
    """The model document at ``path`` (local, gs://, s3://), checked; ModelFileError for anything else."""
    import joblib
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as handle:
            document = joblib.load(handle)
    except Exception as error:  # noqa: BLE001 — an unreadable or foreign file: one line for the user
        raise ModelFileError(f"cannot load {path}: {type(error).__name__}: {str(error)[:200]}") from None
    return checked_model(document, path)


def failure_probabilities(document: MaintenanceModel, batch: Sequence[np.ndarray], _inference_args: Any = None) -> np.ndarray:
    """RunInference's inference function: the model file's classifier, asked for probabilities, not classes."""
    return failure_risk(document["classifier"], np.stack(batch, axis=0))
