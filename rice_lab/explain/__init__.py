"""Explaining a classifier, and testing the explanations.

    attribute(model, images, method, target=None, **options) -> (N, H, W) maps      (attribution)
    explain_plants(model, meta, plants, method)              -> {camera: maps}       (attribution)
    captum_safe(model, example)                              -> a copy captum cannot trip (models)
    camera_photos / model_inputs / lesion_masks              -> what the model sees, and the truth (photos)
    pointing_game, relevance_mass_accuracy, relevance_rank_accuracy, mask_auc        (metrics: localisation)
    deletion_curve, insertion_curve, curve_auc, road(_curve), infidelity              (metrics: faithfulness)
    max_sensitivity                                                                   (metrics: robustness)
    random_map, edge_map                                                              (baselines)
    cascading_randomisation, data_randomisation, map_similarity -> sanity checks' maps and scores (sanity)
    FusedClassifier, explain_fused, camera_shares            -> the fused prediction, both photos at once (fused)
    load_similarity, explain_similarity, similarity_localisation -> the SSL encoder's two-photo agreement (encoder)
    localisation_scores, score_table                         -> per-camera localisation rows; mean and CI tables (metrics)
    concept_sets / random_sets(plants, camera, height)       -> patches cut with the material masks (concepts)
    tcav(model, meta, ...), tcav_controls(runs, ...)         -> TCAV per layer, class, concept, with its t-test (concepts)
    explain_run(run, data, out)                              -> tables, figures and report.html (`rice-lab explain`) (report)
    make_shortcut_data, train_shortcut, accuracy_drop        -> the date-stamp shortcut planted, learnt, measured (shortcut)
    stamp_attributions / stamp_table / stamp_verdicts        -> attribution mass on the stamp against chance and a clean model
    counterfactuals / counterfactual_table                   -> the stamp painted out and on, the change in P(blast)
    interval(values)                                         -> mean and bootstrap CI over images
    encoder_embeddings / classifier_embeddings(run, plants)  -> Embeddings of every photo (embeddings)
    tsne_map, tsne_sweep, map_scores, plot_map, plot_sweep   -> t-SNE with photos, and its numbers
    cross_sensor_alignment(embeddings)                       -> a plant's two cameras against other plants
    cka(x, y), compare(x, y, labels)                         -> linear CKA beside its baseline (similarity)
    checkpoint_cka / layer_cka / camera_cka, effective_rank  -> between checkpoints, layers, cameras
    progress_measures(run_dir)                               -> one row of progress measures per checkpoint (dynamics)
    find_drops(steps, losses), drops_table                   -> sudden drops in a loss curve (changepoints)
"""

from importlib import import_module

_WHERE = {
    "METHODS": "attribution", "attribute": "attribution", "explain_plants": "attribution",
    "captum_safe": "models", "find_layer": "models", "layer_names": "models",
    "camera_photos": "photos", "lesion_masks": "photos", "model_inputs": "photos",
    "pointing_game": "metrics", "relevance_mass_accuracy": "metrics", "relevance_rank_accuracy": "metrics",
    "mask_auc": "metrics", "deletion_curve": "metrics", "insertion_curve": "metrics", "curve_auc": "metrics",
    "road": "metrics", "road_curve": "metrics", "infidelity": "metrics", "max_sensitivity": "metrics", "interval": "metrics",
    "random_map": "baselines", "edge_map": "baselines",
    "noisy_linear_imputation": "imputation",
    "Embeddings": "embeddings", "encoder_embeddings": "embeddings", "classifier_embeddings": "embeddings",
    "with_metadata": "embeddings", "tsne": "embeddings", "tsne_map": "embeddings", "tsne_sweep": "embeddings",
    "map_scores": "embeddings", "plot_map": "embeddings", "plot_sweep": "embeddings",
    "cross_sensor_alignment": "embeddings",
    "cka": "similarity", "linear_cka": "similarity", "minibatch_cka": "similarity", "MinibatchCKA": "similarity",
    "compare": "similarity", "checkpoint_cka": "similarity", "layer_cka": "similarity", "camera_cka": "similarity",
    "effective_rank": "similarity",
    "progress_measures": "dynamics", "dynamics_inputs": "dynamics", "checkpoint_measures": "dynamics",
    "find_drops": "changepoints", "drops_table": "changepoints", "segment_linear": "changepoints",
    "cascading_randomisation": "sanity", "data_randomisation": "sanity", "map_similarity": "sanity",
    "FusedClassifier": "fused", "explain_fused": "fused", "camera_shares": "fused",
    "load_similarity": "encoder", "explain_similarity": "encoder", "similarity_localisation": "encoder",
    "localisation_scores": "metrics", "score_table": "metrics",
    "CONCEPTS": "concepts", "concept_set": "concepts", "concept_sets": "concepts", "random_sets": "concepts",
    "tcav": "concepts", "tcav_scores": "concepts", "tcav_controls": "concepts", "significance": "concepts",
    "explain_run": "report",
    "make_shortcut_data": "shortcut", "train_shortcut": "shortcut", "accuracy_drop": "shortcut",
    "stamped_plants": "shortcut", "explain_stamped": "shortcut", "stamp_attributions": "shortcut",
    "stamp_table": "shortcut", "stamp_verdicts": "shortcut", "repaint_plant": "shortcut",
    "repainted_photos": "shortcut", "counterfactuals": "shortcut", "counterfactual_table": "shortcut",
    "plot_stamp_mass": "shortcut", "plot_stamp_maps": "shortcut", "plot_counterfactuals": "shortcut",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"rice_lab.explain.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'rice_lab.explain' has no attribute {name!r}")


__all__ = sorted(_WHERE)
