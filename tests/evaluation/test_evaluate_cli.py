"""`fmri2image evaluate` end to end on folders of photos, mismatched folders and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fmri2image.cli.main import main


def evaluate(recon, gt, out, *extra):
    return ["evaluate", "--recon", str(recon), "--gt", str(gt), "--out", str(out),
            "--bootstrap", "200", *extra]  # fmt: skip


def test_two_folders_of_photos(photo_folders, tmp_path, capsys):
    gt, recon = photo_folders
    out = tmp_path / "scores" / "method.csv"
    rc = main(evaluate(recon, gt, out, "--metrics", "pixcorr", "ssim", "lite0", "lite0_nway"))
    assert rc == 0
    printed = capsys.readouterr().out
    for needle in ("pixcorr", "ssim", "lite0_nway", "chance 0.5000", "unpaired", "8 image pairs"):
        assert needle in printed, needle
    header = out.read_text().splitlines()[0]
    assert header == "image,pixcorr,ssim,lite0,lite0_nway"
    summary = json.loads(out.with_name("method.summary.json").read_text())
    assert summary["n_images"] == 8 and summary["pairs"]["n_excluded"] == 0
    assert summary["timing"]["lite0"]["images_per_second"] > 0


def test_mismatched_folders_still_evaluate_the_valid_pairs(photo_folders, tmp_path, capsys):
    gt, recon = photo_folders
    mixed = tmp_path / "mixed"
    shutil.copytree(recon, mixed)
    (mixed / "rocket.png").unlink()  # missing reconstruction
    (mixed / "coffee.png").write_bytes(b"not an image")  # corrupt file
    Image.open(mixed / "chelsea.png").convert("L").save(mixed / "chelsea.png")  # grayscale
    Image.new("RGB", (256, 256)).save(mixed / "china.png")  # blank (safety-filtered)
    Image.new("RGB", (64, 64), "white").save(mixed / "extra.png")  # no ground truth
    out = tmp_path / "mixed.csv"
    assert main(evaluate(mixed, gt, out, "--metrics", "pixcorr", "ssim")) == 0
    printed = capsys.readouterr().out
    stems = [line.split(",")[0] for line in out.read_text().splitlines()[1:]]
    assert sorted(stems) == [
        "astronaut",
        "chelsea",
        "flower",
        "hubble_deep_field",
        "immunohistochemistry",
    ]
    summary = json.loads((tmp_path / "mixed.summary.json").read_text())
    excluded = summary["pairs"]["excluded"]
    assert set(excluded) == {"rocket", "coffee", "china", "extra"}
    assert summary["pairs"]["blank"] == ["china"]
    assert "5 image pairs" in printed and "not evaluated" in printed
    # --keep-blank evaluates the blank one too
    assert (
        main(evaluate(mixed, gt, tmp_path / "keep.csv", "--metrics", "ssim", "--keep-blank")) == 0
    )
    assert "china" in (tmp_path / "keep.csv").read_text()


def test_npy_reconstructions_in_a_stated_order(photo_folders, tmp_path, capsys):
    gt, recon = photo_folders
    stems = sorted(p.stem for p in recon.iterdir())[::-1]  # not the sorted order
    arr = np.stack([np.asarray(Image.open(recon / f"{s}.png").convert("RGB")) for s in stems])
    np.save(tmp_path / "recons.npy", arr)
    (tmp_path / "order.txt").write_text("\n".join(stems) + "\n")
    folder_csv, npy_csv = tmp_path / "folder.csv", tmp_path / "npy.csv"
    assert main(evaluate(recon, gt, folder_csv, "--metrics", "pixcorr")) == 0
    args = evaluate(tmp_path / "recons.npy", gt, npy_csv, "--metrics", "pixcorr",
                    "--order", tmp_path / "order.txt", "--compare-to", folder_csv)  # fmt: skip
    assert main([str(a) for a in args]) == 0
    assert folder_csv.read_text() == npy_csv.read_text()  # same pixels, same scores
    assert "paired permutation test" in capsys.readouterr().out


def test_list_metrics(capsys):
    assert main(["evaluate", "--list-metrics"]) == 0
    out = capsys.readouterr().out
    for needle in ("alex2", "AlexNet", "lower is better", "offline weights",
                   "GPU recommended", "chance 0.5", "pairwise_identification"):  # fmt: skip
        assert needle in out, needle


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--metrics", "ssmi"], ["Unknown metric 'ssmi'", "Did you mean: ssim"]),
        (["--metrics", "r2_uniform"], ["--metrics r2_uniform", "Image metrics:"]),
        (["--metric-weights", "alexnet"], ["--metric-weights 'alexnet'", "NETWORK=PATH"]),
        (["--metric-weights", "alexnet=/nope.pth"], ["/nope.pth does not exist"]),
        (["--metric-weights", "alexnett=/nope.pth"], ["no metric network 'alexnett'"]),
        (["--compare-to", "/nope.csv"], ["--compare-to", "/nope.csv"]),
        (["--order", "/nope.txt"], ["--order", "/nope.txt"]),
        (["--metrics", "hit1"], ["--metrics hit1", "--labels FILE"]),
        (["--labels", "/nope.csv"], ["--labels /nope.csv is not a file"]),
        (["--device", "cuda:7"], ["--device cuda:7"]),
    ],
)
def test_bad_options_fail_before_any_work(photo_folders, tmp_path, capsys, extra, needles):
    gt, recon = photo_folders
    out = tmp_path / "sub" / "s.csv"
    if "--device" in extra:
        torch = pytest.importorskip("torch")
        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has 8 GPUs")
    rc = main(evaluate(recon, gt, out, *extra))
    assert rc == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    assert not out.parent.exists()  # nothing written


@pytest.mark.parametrize(
    ("recon", "gt", "out", "needle"),
    [
        ("missing", "gt", "s.csv", "--recon"),
        ("recon", "missing", "s.csv", "--gt"),
        ("recon", "recon", "s.csv", "the same path"),
        ("recon", "gt", "s.txt", "ending in .csv"),
        ("recon", "gt", "adir", "is a folder"),
        ("afile", "gt", "s.csv", "not a .npy"),
    ],
)
def test_bad_paths(photo_folders, tmp_path, capsys, recon, gt, out, needle):
    gt_dir, recon_dir = photo_folders
    (tmp_path / "adir.csv").mkdir()
    (tmp_path / "afile.txt").write_text("x")
    paths = {"recon": recon_dir, "gt": gt_dir, "missing": tmp_path / "missing",
             "afile": tmp_path / "afile.txt"}  # fmt: skip
    out_path = tmp_path / ("adir.csv" if out == "adir" else out)
    assert main(evaluate(paths[recon], paths[gt], out_path)) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_required_flags(capsys):
    assert main(["evaluate", "--recon", "x"]) == 2
    assert "--gt and --out are required" in capsys.readouterr().err


@pytest.mark.wordnet
def test_labels_add_label_columns(photo_folders, tmp_path, capsys):
    gt, recon = photo_folders
    stems = sorted(p.stem for p in gt.iterdir())
    labels = tmp_path / "labels.csv"
    labels.write_text(
        "image,true_wnid,pred_wnid\n"
        + "".join(f"{s},n02123045,n02123045 n02123394\n" for s in stems[:4])
        + "".join(f"{s},n02123045,n02123394 n02123045\n" for s in stems[4:])
    )
    out = tmp_path / "s.csv"
    assert main(evaluate(recon, gt, out, "--metrics", "pixcorr", "hit1", "hit5", "wup",
                         "--labels", str(labels))) == 0  # fmt: skip
    assert out.read_text().splitlines()[0] == "image,pixcorr,hit1,hit5,wup"
    printed = capsys.readouterr().out
    assert "hit1" in printed and "0.5000" in printed  # 4 of 8 top labels right
