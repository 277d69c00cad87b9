"""What comes back from a learner's answer process: plain values only, rebuilt faithfully by the checks."""

from __future__ import annotations

import os
import pickle
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from autograder import wire


def _round_trip(value, template=None):
    return wire.decode(wire.loads(wire.dumps(wire.encode(value))), template)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo hacked",))


def test_a_reply_holding_a_class_is_refused() -> None:
    for payload in (pickle.dumps(_Evil()), pickle.dumps(Path("x")), pickle.dumps(np.zeros(2))):
        with pytest.raises(wire.WireError, match="only plain values"):
            wire.loads(payload)
    with pytest.raises(wire.WireError):
        wire.loads(b"\x80\x05garbage")
    with pytest.raises(wire.WireError):
        wire.decode(("no such kind", 1))


def test_values_round_trip() -> None:
    frame = pd.DataFrame({"Image_id": ["a.jpg", "b_rgn.jpg"], "is_valid": [True, False], "n": [1, 2]},
                         index=[10, 7])
    got = _round_trip(frame)
    assert got.equals(frame) and list(got.index) == [10, 7] and got["is_valid"].dtype == bool
    series = pd.Series(["x", "y"], index=[3, 4], name="paths")
    assert _round_trip(series).equals(series)
    nested = {"a": [1, 2.5, None, "s", (True, b"raw")], 3: {"deep": np.float32(1.5)}}
    assert _round_trip(nested) == {"a": [1, 2.5, None, "s", (True, b"raw")], 3: {"deep": 1.5}}
    array = np.arange(12, dtype=np.int16).reshape(3, 4)
    assert np.array_equal(_round_trip(array), array) and _round_trip(array).dtype == np.int16
    assert _round_trip(np.array(1024)).shape == () and _round_trip(np.array(["a", "bc"])).dtype == np.dtype("<U2")
    assert _round_trip(Path("/tmp/x.png")) == Path("/tmp/x.png")
    assert vars(_round_trip(types.SimpleNamespace(k=1))) == {"k": 1}
    assert isinstance(_round_trip(object()), wire.Opaque)


def test_tensors_modules_and_generators_round_trip() -> None:
    tensor = torch.randn(3, 4, requires_grad=True)
    back = _round_trip(tensor)
    assert torch.equal(back.detach(), tensor.detach()) and back.requires_grad
    assert _round_trip(torch.zeros(0, 3)).shape == (0, 3)
    assert _round_trip(torch.tensor([1, 2], dtype=torch.bfloat16)).dtype == torch.bfloat16
    model = torch.nn.Linear(3, 2)
    trained = torch.nn.Linear(3, 2)
    trained.weight.grad = torch.ones(2, 3)
    back = _round_trip(trained, template=model)
    assert back is not model and torch.equal(back.weight, trained.weight) and torch.equal(back.weight.grad, torch.ones(2, 3))
    generator = torch.Generator().manual_seed(5)
    assert torch.equal(torch.rand(3, generator=_round_trip(generator)), torch.rand(3, generator=generator))


def test_requests_keep_generators_and_gradients() -> None:
    model = torch.nn.Linear(2, 2)
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(3)
    got_model, got_optimizer, got_generator = pickle.loads(wire.dumps_request((model, optimizer, generator)))
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in got_model.parameters())
    assert got_optimizer.param_groups[0]["params"][0] is got_model.weight  # the optimiser still drives the model
    assert torch.equal(torch.rand(2, generator=got_generator), torch.rand(2, generator=generator))


def test_figures_are_rebuilt_with_what_checks_read() -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from autograder.figures import MASK_CMAP_NAME, show_mask

    fig, axes = plt.subplots(1, 2)
    axes[0].imshow(np.arange(6, dtype=np.uint8).reshape(2, 3))
    axes[0].set_title("RGB")
    show_mask(axes[1], np.array([[0, 1], [3, 4]], dtype=np.uint8))
    fig.suptitle("id_x (blast)")
    back = _round_trip(fig)
    plt.close(fig)
    panels = [ax for ax in back.axes if ax.get_images()]
    assert [ax.get_title() for ax in panels] == ["RGB", ""]
    assert np.array_equal(panels[0].get_images()[0].get_array(), np.arange(6).reshape(2, 3))
    assert panels[1].get_images()[0].get_cmap().name == MASK_CMAP_NAME
    assert [t.get_text() for t in panels[1].get_legend().get_texts()] == ["background", "leaf", "lesion_margin",
                                                                          "lesion_centre"]
    assert back._suptitle.get_text() == "id_x (blast)"
