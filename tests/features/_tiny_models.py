"""Tiny models saved exactly like real ones, shared by the feature and retrieval tests.

Each builder writes real files (``save_pretrained(..., safe_serialization=True)``,
tokenizer files, open_clip configs, a Hugging Face hub cache layout), so the code
under test loads them through the same path a user's hub id or folder takes.
``tests/features/conftest.py`` wraps them in fixtures; tests in other folders import
this module directly (``sys.path`` gets ``tests/features``).
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

# Fake 40-hex commit: HF cache snapshots are keyed by commit hash.
FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"
VIT_ID = "google/vit-base-patch16-224-in21k"
CLIP_ID = "openai/clip-vit-base-patch16"
TINY_OPEN_CLIP = "fmri2image-tiny-clip"

# Tiny CLIP text config: ids 0/1 are <|startoftext|>/<|endoftext|> (also padding).
CLIP_TEXT_VOCAB = 99
CLIP_BOS, CLIP_EOS = 0, 1


def write_hf_cache(cache_dir: Path, repo_id: str, source_dir: Path) -> Path:
    """Lay ``source_dir`` out as the hub cache entry of ``repo_id`` (main -> FAKE_COMMIT)."""
    repo = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / FAKE_COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in Path(source_dir).iterdir():
        shutil.copy2(f, snapshot / f.name)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(FAKE_COMMIT)
    return snapshot


def write_clip_tokenizer(folder: Path, *, scratch: Path) -> None:
    """A character-level CLIP BPE tokenizer (< 99 tokens), saved into ``folder``.

    The vocabulary and merges are written to ``scratch`` as ``vocab.json`` and
    ``merges.txt`` (the files a CLIP repo ships), read by ``CLIPTokenizer`` and saved
    with ``save_pretrained``; characters outside it map to ``<|endoftext|>``.
    """
    from transformers import CLIPTokenizer

    chars = string.ascii_lowercase + string.digits + "-'.,()&/"
    vocab = {"<|startoftext|>": CLIP_BOS, "<|endoftext|>": CLIP_EOS}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = [("p", "h"), ("o", "t"), ("ph", "ot")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    assert len(vocab) <= CLIP_TEXT_VOCAB
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "vocab.json").write_text(json.dumps(vocab))
    (scratch / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges)
    )
    tokenizer = CLIPTokenizer(vocab=str(scratch / "vocab.json"), merges=str(scratch / "merges.txt"))
    tokenizer.save_pretrained(folder)


def save_tiny_clip(path: Path, *, projection_dim: int = 512, tokenizer: bool = True) -> Path:
    """Full CLIPModel (text + vision), CLIP image processor and (optionally) a tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(0)
    small = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1}
    config = CLIPConfig(
        text_config={
            **small,
            "num_attention_heads": 2,
            "vocab_size": CLIP_TEXT_VOCAB,
            "bos_token_id": CLIP_BOS,
            "eos_token_id": CLIP_EOS,
            "pad_token_id": CLIP_EOS,
        },
        vision_config={**small, "num_attention_heads": 2, "image_size": 224, "patch_size": 32},
        projection_dim=projection_dim,
    )
    CLIPModel(config).save_pretrained(path, safe_serialization=True)
    CLIPImageProcessor().save_pretrained(path)  # library defaults = OpenAI CLIP's
    if tokenizer:
        write_clip_tokenizer(path, scratch=Path(path).parent / (Path(path).name + "-tokenizer-src"))
    return Path(path)


def save_tiny_open_clip(folder: Path) -> tuple[object, Path]:
    """A tiny open_clip CLIP (registered as ``TINY_OPEN_CLIP``) saved as safetensors.

    The text tower's vocabulary has open_clip's real size (49408), so the packaged
    BPE ``SimpleTokenizer`` that open_clip pairs with CLIP models can feed it.
    """
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = {
        "embed_dim": 24,
        "vision_cfg": {
            "image_size": 64,
            "layers": 1,
            "width": 32,
            "patch_size": 16,
            "head_width": 16,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 16,
            "heads": 2,
            "layers": 1,
        },
    }
    folder = Path(folder)
    (folder / f"{TINY_OPEN_CLIP}.json").write_text(json.dumps(config))
    open_clip.add_model_config(folder / f"{TINY_OPEN_CLIP}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_OPEN_CLIP).eval()
    path = folder / "tiny.safetensors"
    save_file(model.state_dict(), str(path))
    return model, path
