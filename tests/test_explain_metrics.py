"""Attribution metrics: known answers on hand-made arrays, and agreement with Quantus (localisation,
deletion) and pytorch-grad-cam (ROAD) on the same maps, masks, photos and real classifier."""

from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import (
    NoisyLinearImputer,
    ROADLeastRelevantFirstAverage,
    ROADMostRelevantFirstAverage,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

from rice_lab.errors import ConfigError, DataError
from rice_lab.evaluate.bootstrap import bootstrap_ci
from rice_lab.evaluate.encode import plant_photos
from rice_lab.explain.attribution import attribute
from rice_lab.explain.baselines import edge_map, random_map
from rice_lab.explain.imputation import noisy_linear_imputation
from rice_lab.explain.metrics import (
    ROAD_PERCENTAGES,
    curve_auc,
    deletion_curve,
    infidelity,
    insertion_curve,
    interval,
    mask_auc,
    max_sensitivity,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    road,
    road_curve,
)
from rice_lab.explain.photos import camera_photos, lesion_masks, model_inputs
from tests.explain_classifier import classifier, diseased_plants, train_tiny_classifier

# pytorch-grad-cam's imputer calls np.argwhere on torch tensors, which numpy 2 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")

LOCALISATION = {"PointingGame": pointing_game, "RelevanceMassAccuracy": relevance_mass_accuracy,
                "RelevanceRankAccuracy": relevance_rank_accuracy, "AUC": mask_auc}


@pytest.fixture(scope="module")
def run_dir(synth_root, tmp_path_factory):
    return train_tiny_classifier(synth_root, tmp_path_factory.mktemp("explain-metrics"))


@pytest.fixture(scope="module")
def plants(synth_root):
    return diseased_plants(synth_root, 12)


@pytest.fixture(scope="module")
def photos(run_dir, plants):
    """The classifier's view of the plants' RGB photos, their lesion masks and three kinds of map."""
    model, meta = classifier(run_dir)
    x = model_inputs(camera_photos(plants, meta)["rgb"], "rgb", meta)
    masks = lesion_masks(plants, "rgb", meta["photo_height"])
    maps = {"saliency": attribute(model, x, "saliency"), "integrated-gradients": attribute(model, x, "integrated-gradients"),
            "grad-cam": attribute(model, x, "grad-cam"), "random": random_map(x), "edge": edge_map(x)}
    return x, masks, maps


# ---------------------------------------------------------------- localisation: known answers

def square_masks() -> np.ndarray:
    masks = np.zeros((3, 8, 8), dtype=bool)
    masks[0, 2:5, 2:5] = True  # a 3 x 3 lesion
    masks[1, 0, 0] = True      # one lesion pixel in the corner
    return masks                # the third photo: no lesion


def test_a_map_that_is_the_mask_scores_perfectly_and_its_negation_scores_nothing():
    masks = square_masks()
    perfect = masks.astype(float)
    for metric in (pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, mask_auc):
        scores = metric(perfect, masks)
        assert scores[:2].tolist() == [1.0, 1.0] and math.isnan(scores[2]), metric.__name__
    assert pointing_game(-perfect, masks)[:2].tolist() == [0.0, 0.0]
    assert relevance_rank_accuracy(-perfect, masks)[:2].tolist() == [0.0, 0.0]
    assert mask_auc(-perfect, masks)[:2].tolist() == [0.0, 0.0]
    assert np.isnan(relevance_mass_accuracy(-perfect, masks)).all()  # no positive attribution at all


def test_partial_maps_ties_and_torch_input_score_as_defined():
    masks = square_masks()[:1]
    partial = np.zeros((1, 8, 8))
    partial[0, 2, 2:5] = 1.0  # a third of the lesion
    assert relevance_mass_accuracy(partial, masks)[0] == 1.0
    # 3 lesion pixels lead; the 6 places left go to the 61 tied zeros, 6 of which are lesion pixels
    assert relevance_rank_accuracy(partial, masks)[0] == pytest.approx((3 + 6 * 6 / 61) / 9)
    assert mask_auc(partial, masks)[0] == pytest.approx(2 / 3)  # 3/9 win outright, 6/9 tie with every other pixel
    constant = np.ones((1, 8, 8))
    assert pointing_game(constant, masks)[0] == 1.0  # every pixel holds the maximum, lesion pixels too
    assert mask_auc(constant, masks)[0] == 0.5
    assert relevance_rank_accuracy(constant, masks)[0] == pytest.approx(9 / 64)  # ties: expected share
    spread = np.full((1, 8, 8), 0.1)
    spread[0, 2, 2] = 1.0
    spread[0, 7, 7] = -5.0  # negative attribution does not count against the mass
    assert relevance_mass_accuracy(spread, masks)[0] == pytest.approx((1.0 + 8 * 0.1) / (1.0 + 62 * 0.1))
    assert np.array_equal(mask_auc(torch.from_numpy(spread), torch.from_numpy(masks)), mask_auc(spread, masks))
    with pytest.raises(DataError, match=r"masks of shape \(1, 8, 8\) for maps of shape \(1, 8, 7\)"):
        mask_auc(spread[:, :, :7], masks)


# ---------------------------------------------------------------- localisation: Quantus

@pytest.mark.parametrize("name", list(LOCALISATION))
def test_localisation_equals_quantus_on_real_maps_and_masks(photos, name):
    x, masks, maps = photos
    assert masks.any(axis=(1, 2)).sum() >= 6
    for kind, signed_map in maps.items():
        # Quantus's relevance mass is (attribution in the mask) / (all attribution), signed; ours counts
        # positive attribution only, so the two agree on maps without negative values (ours' definition
        # on a clipped map is Quantus's on that map).
        a = signed_map.clamp(min=0) if name == "RelevanceMassAccuracy" else signed_map
        # normalise=False: Quantus's default divides each map by its largest magnitude in float32, which
        # rounds near-equal values into ties (Grad-CAM's smooth peaks) and so moves pointing-game hits;
        # dividing by a positive number changes no score otherwise. abs=False is its default.
        metric = getattr(quantus, name)(normalise=False, disable_warnings=True)
        theirs = np.array(metric(model=None, x_batch=x.numpy(), y_batch=np.zeros(len(x), dtype=int),
                                 a_batch=a.numpy()[:, None], s_batch=masks[:, None].astype(np.float32)), dtype=float)
        ours = LOCALISATION[name](a, masks)
        if name == "RelevanceRankAccuracy":
            # Quantus breaks ties at the K-th value by numpy's unstable argsort, we share the places
            # left evenly among the tied pixels: compare where the K-th value has no tie (Grad-CAM's
            # ReLU zeros and its smooth upsampling tie often).
            untied = ~boundary_tie(a.numpy(), masks)
            assert untied.sum() >= 3 or kind == "grad-cam", kind
            ours, theirs = ours[untied], theirs[untied]
        # rtol: Quantus sums float32 maps in float32, we in float64
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12, equal_nan=True, err_msg=kind)


def boundary_tie(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Whether the K-th highest value of each map (K = mask size) ties with another pixel."""
    flat = -np.sort(-maps.reshape(len(maps), -1), axis=1)
    k = masks.reshape(len(masks), -1).sum(axis=1)
    kth = flat[np.arange(len(k)), np.maximum(k - 1, 0)]
    return (flat == kth[:, None]).sum(axis=1) > 1


# ---------------------------------------------------------------- deletion / insertion

class RegionLogit(nn.Module):
    """Class 0's logit is ``scale`` x the sum of the input over a region; class 1's is 0 (a known answer)."""

    def __init__(self, region: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.register_buffer("region", region.float())
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.scale * (x * self.region).sum((1, 2, 3))
        return torch.stack([logit, torch.zeros_like(logit)], 1)


def test_deletion_and_insertion_follow_the_ranking_step_by_step():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :] = True  # 16 of 64 pixels
    model = RegionLogit(region, scale=0.05)
    x = torch.ones(1, 3, 8, 8)
    ranking = region.float()[None] + torch.linspace(0, 0.5, 64).reshape(1, 8, 8)  # the region first
    steps = 8  # 8 pixels a step
    deleted = deletion_curve(model, x, ranking, target=0, steps=steps)
    inserted = insertion_curve(model, x, ranking, target=0, steps=steps)
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    for i in range(steps + 1):
        removed = i * 8
        assert deleted[0, i] == pytest.approx(sigmoid(0.05 * 3 * max(16 - removed, 0)), abs=1e-6)
        assert inserted[0, i] == pytest.approx(sigmoid(0.05 * 3 * min(removed, 16)), abs=1e-6)
    reversed_deletion = deletion_curve(model, x, -ranking, target=0, steps=steps)
    assert curve_auc(deleted)[0] < curve_auc(reversed_deletion)[0]
    assert curve_auc(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx(0.25)
    with pytest.raises(ConfigError, match="maps of shape"):
        deletion_curve(model, x, ranking[0], target=0)


def test_curves_start_and_end_at_the_photo_and_the_baseline(run_dir, photos):
    model, _ = classifier(run_dir)
    x, _, maps = photos
    with torch.no_grad():
        probs = model(x).softmax(1)
        predicted = probs.argmax(1)
        blank = model(torch.zeros_like(x)).softmax(1)
    index = torch.arange(len(x))
    deleted = deletion_curve(model, x, maps["saliency"], steps=4)
    inserted = insertion_curve(model, x, maps["saliency"], steps=4)
    np.testing.assert_allclose(deleted[:, 0], probs[index, predicted].numpy(), rtol=1e-5)
    np.testing.assert_allclose(inserted[:, -1], probs[index, predicted].numpy(), rtol=1e-5)
    np.testing.assert_allclose(deleted[:, -1], blank[index, predicted].numpy(), rtol=1e-5)
    np.testing.assert_allclose(inserted[:, 0], blank[index, predicted].numpy(), rtol=1e-5)


def test_deletion_equals_quantus_pixel_flipping(run_dir, plants):
    model, meta = classifier(run_dir)
    # 48 px high photos (48 x 60): Quantus asserts that features_in_step divides H x W although it
    # steps through C x H x W values, so H x W must be divisible by 3 x (pixels per step); 12 steps of
    # 240 pixels (720 values) do it. The classifier pools globally, so any photo size runs.
    x = model_inputs(plant_photos(plants, "rgb", 48), "rgb", meta)
    maps = attribute(model, x, "integrated-gradients")
    steps = 12
    ours = deletion_curve(model, x, maps, steps=steps)
    with torch.no_grad():
        predicted = model(x).argmax(1).numpy()
    # Settings that make Quantus compute our curve: features_in_step = one step of whole pixels (the
    # map is broadcast over the 3 channels, so a pixel's 3 values sit side by side in its ranking);
    # perturb_baseline=0.0, a number (its "mean" and "black" are recomputed from the already
    # perturbed photo at every step); softmax=True (we follow the probability). Quantus's curve
    # leaves out the unperturbed photo, our first point.
    theirs = quantus.PixelFlipping(features_in_step=3 * x.shape[-2] * x.shape[-1] // steps, perturb_baseline=0.0,
                                   disable_warnings=True)(model=model, x_batch=x.numpy(), y_batch=predicted,
                                                          a_batch=maps.numpy()[:, None], softmax=True, device="cpu")
    np.testing.assert_allclose(ours[:, 1:], np.array(theirs), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- ROAD: pytorch-grad-cam

def test_noisy_linear_imputation_equals_pytorch_grad_cams():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 12, 15, generator=generator)
    remove = torch.rand(4, 12, 15, generator=generator) < 0.6
    ours = noisy_linear_imputation(x, remove, noise=0.0)
    reference = NoisyLinearImputer(noise=0.0)
    theirs = torch.stack([reference(x[i], (~remove[i]).float()) for i in range(len(x))])  # their mask: 1 = keep
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.equal(ours.permute(1, 0, 2, 3)[:, ~remove], x.permute(1, 0, 2, 3)[:, ~remove])
    noisy = noisy_linear_imputation(x, remove, noise=0.5, generator=np.random.default_rng(1))
    spread = (noisy - ours).permute(1, 0, 2, 3)[:, remove]
    assert 0.4 < spread.std().item() < 0.6 and torch.equal(noisy.permute(1, 0, 2, 3)[:, ~remove],
                                                            x.permute(1, 0, 2, 3)[:, ~remove])


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_equals_pytorch_grad_cams(run_dir, photos, order):
    model, _ = classifier(run_dir)
    x, _, maps = photos
    ranking = maps["integrated-gradients"].double()
    cams = ((ranking - ranking.amin((1, 2), keepdim=True))
            / (ranking.amax((1, 2), keepdim=True) - ranking.amin((1, 2), keepdim=True))).numpy()  # in [0, 1], float64
    with torch.no_grad():
        predicted = model(x).argmax(1)
        before = model(x).softmax(1)[torch.arange(len(x)), predicted].double().numpy()
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in predicted]
    # pytorch-grad-cam names the threshold, not the share removed: its percentile q removes the pixels
    # at or above the map's q-th percentile, (100 - q) % of them; least relevant first uses 1 - map
    # where we negate the map (the same ranking). It reports the change from the photo's score.
    removal = {"morf": RemoveMostRelevantFirst, "lerf": RemoveLeastRelevantFirst}[order]
    exact = road_curve(model, x, cams, order=order, noise=0.0)
    for k, percentage in enumerate(ROAD_PERCENTAGES):
        metric = PerturbationConfidenceMetric(removal(100 - percentage, NoisyLinearImputer(noise=0.0)))
        theirs = metric(x, cams, targets, model)
        np.testing.assert_allclose(exact[:, k] - before, theirs, atol=2e-5, err_msg=f"{order} {percentage}%")
    # With ROAD's noise (0.01, the default on both sides) the draws differ, the scores barely.
    averager = {"morf": ROADMostRelevantFirstAverage, "lerf": ROADLeastRelevantFirstAverage}[order]
    theirs = averager(list(ROAD_PERCENTAGES))(x, cams, targets, model)
    np.testing.assert_allclose(road(model, x, cams, order=order) - before, theirs, atol=2e-3)


def test_road_checks_its_settings(run_dir, photos):
    model, _ = classifier(run_dir)
    x, _, maps = photos
    with pytest.raises(ConfigError, match="order='best'"):
        road_curve(model, x, maps["random"], order="best")
    with pytest.raises(ConfigError, match="percentages"):
        road_curve(model, x, maps["random"], percentages=(0, 50))
    curve = road_curve(model, x, maps["random"], percentages=(25, 75), seed=3)
    assert curve.shape == (len(x), 2) and np.array_equal(curve, road_curve(model, x, maps["random"],
                                                                           percentages=(25, 75), seed=3))


# ---------------------------------------------------------------- infidelity, max-sensitivity

def test_infidelity_is_zero_for_the_exact_map_of_a_linear_model():
    region = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) < 0.3
    model = RegionLogit(region, scale=0.7)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    exact = (0.7 * 3 * region.float()).expand(5, 8, 8)  # d logit / d pixel, all channels together
    for normalize in (False, True):
        assert np.abs(infidelity(model, x, exact, target=0, normalize=normalize)).max() < 1e-5  # float32 rounding
    assert (infidelity(model, x, random_map(x), target=0) > 1e-2).all()


def test_infidelity_prefers_the_gradient_to_the_baselines_on_the_classifier(run_dir, photos):
    model, _ = classifier(run_dir)
    x, _, maps = photos
    inputs = x.clone().requires_grad_()
    logits = model(inputs)
    predicted = logits.argmax(1)
    gradient, = torch.autograd.grad(logits.gather(1, predicted[:, None]).sum(), inputs)
    scores = {name: infidelity(model, x, m, noise=0.05, samples=32)
              for name, m in {"gradient": gradient.sum(1), "random": maps["random"], "edge": maps["edge"]}.items()}
    assert all(np.isfinite(s).all() and (s >= 0).all() for s in scores.values())
    assert scores["gradient"].mean() < scores["random"].mean() and scores["gradient"].mean() < scores["edge"].mean()


def test_max_sensitivity_is_zero_without_noise_and_grows_with_it(run_dir, photos):
    model, _ = classifier(run_dir)
    x = photos[0][:4]
    for method in ("saliency", "smoothgrad"):  # smoothgrad's own noise is seeded: the same at each call
        assert np.abs(max_sensitivity(model, x, method, radius=0.0, samples=2)).max() < 1e-6
    small = max_sensitivity(model, x, "saliency", radius=0.05, samples=4)
    large = max_sensitivity(model, x, "saliency", radius=1.0, samples=4)
    assert np.isfinite(small).all() and (small > 0).all() and large.mean() > small.mean()


# ---------------------------------------------------------------- baselines and intervals

def test_the_random_map_is_seeded_and_the_edge_map_finds_edges():
    x = torch.zeros(2, 3, 6, 10)
    assert torch.equal(random_map(x, seed=4), random_map(x, seed=4))
    assert not torch.equal(random_map(x, seed=4), random_map(x, seed=5))
    assert random_map(x).shape == (2, 6, 10) and 0 <= random_map(x).min() and random_map(x).max() < 1
    assert torch.equal(edge_map(x), torch.zeros(2, 6, 10))  # a flat photo has no edge, its frame neither
    x[:, :, :, 5:] = 1.0  # a vertical step between columns 4 and 5
    edges = edge_map(x)
    assert torch.allclose(edges[:, :, 4:6], torch.full((2, 6, 2), 3 * 4.0))  # Sobel: 1 + 2 + 1, three channels
    assert torch.equal(edges[:, :, :4], torch.zeros(2, 6, 4)) and torch.equal(edges[:, :, 6:], torch.zeros(2, 6, 4))


def test_interval_leaves_out_photos_without_lesions():
    values = np.array([1.0, np.nan, 0.0, 1.0, 0.5])
    assert interval(values, seed=3) == bootstrap_ci(np.array([1.0, 0.0, 1.0, 0.5]), np.mean, seed=3)
    with pytest.raises(ConfigError, match="at least two"):
        interval([np.nan, 1.0])
