"""How good is a representation, a classifier or a dataset? Shared by every stage after the data.

    encode(encoder, images, camera)           -> features, normalised as the encoder was trained
    plant_photos(plants, camera, height)      -> every plant's photo from one camera, uint8
    knn_accuracy / linear_probe_accuracy(encoder, plants, ...) -> ProbeResult (training plants by default)
    compare_encoders({name: encoder}, plants, baseline)        -> cross-validated accuracies, paired gains
    colour_histogram_baseline / train_pixel_mlp / train_small_cnn(plants, on="holdout"|"test")
                                              -> BaselineResult: how hard a dataset is, and why
    bootstrap_ci(per_item_values)             -> Interval: a statistic and its bootstrap interval
    log_loss / expected_calibration_error / reliability / fit_temperature (rice_lab.evaluate.calibration)
"""

from rice_lab.evaluate.baselines import (
    BaselineResult,
    colour_histogram_baseline,
    evaluation_tables,
    pixel_mlp,
    small_cnn,
    train_network,
    train_pixel_mlp,
    train_small_cnn,
)
from rice_lab.evaluate.bootstrap import Interval, bootstrap_ci
from rice_lab.evaluate.encode import encode, plant_photos, photo_stats
from rice_lab.evaluate.probes import (
    ProbeResult,
    compare_encoders,
    cross_val_correct,
    knn_accuracy,
    labelled_split,
    linear_probe_accuracy,
    plant_features,
    probe_plants,
)

__all__ = [
    "BaselineResult", "Interval", "ProbeResult", "bootstrap_ci", "colour_histogram_baseline", "compare_encoders",
    "cross_val_correct", "encode", "evaluation_tables", "knn_accuracy", "labelled_split", "linear_probe_accuracy",
    "photo_stats", "pixel_mlp", "plant_features", "plant_photos", "probe_plants", "small_cnn", "train_network",
    "train_pixel_mlp", "train_small_cnn",
]
