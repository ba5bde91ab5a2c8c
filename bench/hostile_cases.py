"""The hostile battery's one-command cases (bench/hostile.py runs them).

Each case is one ``dopplerdiff`` command line with placeholders filled from the workspace:
{run} a trained smoke run, {data} its data, {idx} an embedding index, {notimg} a text file named .png,
{txt} a text file, {empty} an empty folder, {nested} a DATA/<condition>/ID_k folder, {out} a fresh path
that must not appear when the command fails, {w1} {w2} {w3} three real windows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Case:
    """One command and what it must do: ``error`` (exit 2, one ``error:`` line, nothing written or lost),
    ``ok`` (exit 0) or ``clean`` (either, but never a traceback and nothing lost)."""

    name: str
    category: str
    args: list[str]
    expect: str = "error"
    damage: str | None = None  # a damage recipe (bench/hostile.py DAMAGE) applied to a fresh run copy
    writes: bool = False  # an ``ok`` case that is meant to change the run


G = ["generate", "-r", "{run}", "-o", "{out}", "-i", "ID_1", "-n", "1", "-q"]
T = ["edit", "transfer", "-r", "{run}", "--input", "{w1}", "-o", "{out}", "-i", "ID_2", "-q"]
P = ["edit", "inpaint", "-r", "{run}", "--input", "{w1}", "-o", "{out}", "--mask-time", "0.4:0.6", "-q"]
IP = ["edit", "interpolate", "-r", "{run}", "-o", "{out}", "-q"]
EG = ["enroll-generator", "-r", "{run}", "--steps", "2", "-q"]
A = ["augment", "-r", "{run}", "-o", "{out}", "-n", "1", "-q"]
ID = ["identify", "-i", "{idx}", "-c", "smoke", "-q"]
EN = ["enroll", "-i", "{idx}", "-c", "smoke", "-q"]
SIM = ["simulate", "-c", "smoke", "-q", "-o", "{out}"]


def _numbers() -> list[Case]:
    c = "numbers"
    bad = [
        ("simulate identities 0", SIM + ["--identities", "0"]),
        ("simulate identities -1", SIM + ["--identities", "-1"]),
        ("simulate per-identity 0", SIM + ["--per-identity", "0"]),
        ("simulate size 0", SIM + ["--size", "0"]),
        ("simulate size huge", SIM + ["--size", "10000000"]),
        ("simulate carrier nan", SIM + ["--carrier-ghz", "nan"]),
        ("simulate carrier -inf", SIM + ["--carrier-ghz", "-inf"]),
        ("generate num 0", G[:-3] + ["-n", "0"]),
        ("generate guidance nan", G + ["--guidance", "nan"]),
        ("generate guidance inf", G + ["--guidance", "inf"]),
        ("generate seed -1", G + ["--seed", "-1"]),
        ("generate seed 2^64", G + ["--seed", str(2**64)]),
        ("generate steps 0", G + ["--steps", "0"]),
        ("generate batch-size 0", G + ["--batch-size", "0"]),
        ("generate strength nan", G + ["--from-real", "split", "--strength", "nan"]),
        ("generate strength 2", G + ["--from-real", "split", "--strength", "2"]),
        ("generate guidance-interval reversed", G + ["--guidance-interval", "0.8", "0.2"]),
        ("generate guidance-interval nan", G + ["--guidance-interval", "nan", "1"]),
        ("generate filter min-confidence nan", G + ["--filter", "--min-confidence", "nan"]),
        ("generate filter max-attempts 0", G + ["--filter", "--max-attempts", "0"]),
        ("generate filter tolerance -1", G + ["--filter", "--physics-tolerance", "-1"]),
        ("generate format tif", G + ["--format", "tif"]),
        ("generate scheduler bogus", G + ["--scheduler", "bogus"]),
        ("augment per-identity -1", A[:-3] + ["-n", "-1", "-q"]),
        ("augment ratio nan", A[:-3] + ["--ratio", "nan", "-q"]),
        ("augment ratio inf", A[:-3] + ["--ratio", "inf", "-q"]),
        ("augment real-per-identity 0", A + ["--real-per-identity", "0"]),
        ("transfer strength 0", T + ["--strength", "0"]),
        ("transfer strength nan", T + ["--strength", "nan"]),
        ("transfer guidance inf", T + ["--guidance", "inf"]),
        ("transfer seed -1", T + ["--seed", "-1"]),
        ("inpaint mask reversed", P[:-3] + ["--mask-time", "0.6:0.4", "-q"]),
        ("inpaint mask nan", P[:-3] + ["--mask-time", "nan:1", "-q"]),
        ("inpaint doppler outside", P + ["--mask-doppler", "2:3"]),
        ("inpaint resample -1", P + ["--resample", "-1"]),
        ("interpolate seeds nan", IP + ["-i", "ID_1", "--seeds", "nan:1"]),
        ("interpolate seeds 1e30", IP + ["-i", "ID_1", "--seeds", "1e30:1"]),
        ("interpolate seeds fractional", IP + ["-i", "ID_1", "--seeds", "1.9:2.2"]),
        ("interpolate num 0", IP + ["--from", "ID_1", "--to", "ID_2", "-n", "0"]),
        ("interpolate mix weight nan", IP + ["-i", "ID_1:nan,ID_2:0.5"]),
        ("interpolate mix weight negative", IP + ["-i", "ID_1:-1,ID_2:2"]),
        ("enroll-generator lr nan", EG + ["-i", "bob", "--lr", "nan", "{w1}", "{w2}", "{w3}"]),
        ("enroll-generator lr inf", EG + ["-i", "bob", "--lr", "inf", "{w1}", "{w2}", "{w3}"]),
        ("enroll-generator lr -1", EG + ["-i", "bob", "--lr", "-1", "{w1}", "{w2}", "{w3}"]),
        ("enroll-generator steps 0", EG[:-3] + ["--steps", "0", "-i", "bob", "{w1}", "{w2}", "{w3}"]),
        ("identify threshold nan", ID + ["--threshold", "nan", "{w1}"]),
        ("identify threshold inf", ID + ["--threshold", "inf", "{w1}"]),
        ("identify threshold word", ID + ["--threshold", "abc", "{w1}"]),
        ("identify k 0", ID + ["-k", "0", "{w1}"]),
        ("search k 0", ["search", "-i", "{idx}", "-c", "smoke", "-k", "0", "{w1}"]),
        ("evaluate guidance nan", ["evaluate", "-r", "{run}", "-c", "smoke", "--guidance", "nan",
                                   "--out", "{out}"]),
        ("evaluate device tpu", ["evaluate", "-r", "{run}", "-c", "smoke", "--device", "tpu",
                                 "--out", "{out}"]),
        ("cache-latents batch 0", ["cache-latents", "-r", "{run}", "--batch-size", "0", "--overwrite"]),
        ("train-autoencoder steps -5", ["train-autoencoder", "-r", "{out}", "--data", "{data}", "-c",
                                        "smoke", "autoencoder.train.steps=-5"]),
        ("train-autoencoder lr nan", ["train-autoencoder", "-r", "{out}", "--data", "{data}", "-c",
                                      "smoke", "autoencoder.train.lr=nan"]),
    ]
    return [Case(n, c, a) for n, a in bad] + [
        Case("search k huge", c, ["search", "-i", "{idx}", "-c", "smoke", "-k", "1000000", "{w1}"], "clean"),
    ]


def _inputs() -> list[Case]:
    c = "inputs"
    w3 = ["{w1}", "{w2}", "{w3}"]
    bad = [
        ("enroll-generator same file x3", EG + ["-i", "bob", "{w1}", "{w1}", "{w1}"]),
        ("enroll-generator not images", EG + ["-i", "bob", "{notimg}", "{notimg}", "{txt}"]),
        ("enroll-generator name tab", EG + ["-i", "bob\t", *w3]),
        ("enroll-generator name unknown", EG + ["-i", "unknown", *w3]),
        ("enroll-generator name 300 chars", EG + ["-i", "b" * 300, *w3]),
        ("enroll-generator name traversal", EG + ["-i", "../evil", *w3]),
        ("enroll-generator name empty", EG + ["-i", "", *w3]),
        ("enroll-generator existing no --replace", EG + ["-i", "ID_1", *w3]),
        ("generate unknown identity", G[:-3] + ["-i", "nobody", "-q"]),
        ("transfer unknown identity", T[:-3] + ["-i", "nobody", "-q"]),
        ("transfer not an image", ["edit", "transfer", "-r", "{run}", "--input", "{notimg}", "-o", "{out}",
                                   "-i", "ID_2"]),
        ("transfer empty folder", ["edit", "transfer", "-r", "{run}", "--input", "{empty}", "-o", "{out}",
                                   "-i", "ID_2"]),
        ("interpolate from == to", IP + ["--from", "ID_1", "--to", "ID_1"]),
        ("interpolate unknown identity", IP + ["--from", "ID_1", "--to", "nobody"]),
        ("identify not an image", ID + ["{notimg}"]),
        ("identify missing file", ID + ["{work}/nope.png"]),
        ("enroll existing no --append", EN + ["-n", "ID_1", *w3]),
        ("enroll name tab", EN + ["-n", "bad\tname", *w3]),
        ("enroll not images", EN + ["-n", "bob", "{notimg}"]),
        ("remove unknown identity", ["remove", "-i", "{idx}", "-c", "smoke", "-n", "nobody"]),
        ("inspect empty folder", ["inspect", "{empty}"]),
        ("inspect a file", ["inspect", "{txt}"]),
        ("embed split bogus", ["embed", "-e", "{run}/encoder", "-i", "{out}", "-c", "smoke",
                               "--split", "bogus"]),
        ("embed strangers unknown", ["embed", "-e", "{run}/encoder", "-i", "{out}", "-c", "smoke",
                                     "--strangers", "nobody"]),
        ("config missing file", G + ["-c", "{work}/nope.yaml"]),
        ("config not yaml", ["simulate", "-o", "{out}", "-c", "{notimg}"]),
        ("config override unknown key", SIM + ["diffusion.nope=1"]),
        ("run profile bogus", ["run", "--profile", "bogus", "--out", "{out}"]),
    ]
    return [Case(n, c, a) for n, a in bad] + [
        Case("search duplicate queries", c, ["search", "-i", "{idx}", "-c", "smoke", "{w1}", "{w1}"],
             "clean"),
        Case("identify duplicate queries fused", c, ID + ["--fuse", "{w1}", "{w1}"], "clean"),
        Case("generate duplicate identity", c, G + ["-i", "ID_1"], "clean"),
    ]


def _outputs() -> list[Case]:
    c = "outputs"
    bad = [
        ("generate -o file", ["generate", "-r", "{run}", "-o", "{txt}", "-i", "ID_1", "-n", "1"]),
        ("generate -o run", ["generate", "-r", "{run}", "-o", "{run}", "-i", "ID_1", "-n", "1"]),
        ("augment -o file", ["augment", "-r", "{run}", "-o", "{txt}", "-n", "1"]),
        ("augment -o run", ["augment", "-r", "{run}", "-o", "{run}", "-n", "1"]),
        ("transfer -o file", ["edit", "transfer", "-r", "{run}", "--input", "{w1}", "-o", "{txt}",
                              "-i", "ID_2"]),
        ("interpolate -o run", ["edit", "interpolate", "-r", "{run}", "-o", "{run}", "--from", "ID_1",
                                "--to", "ID_2"]),
        ("simulate -o file", ["simulate", "-c", "smoke", "-o", "{txt}"]),
        ("simulate -o run", ["simulate", "-c", "smoke", "-o", "{run}"]),
        ("evaluate --out file", ["evaluate", "-r", "{run}", "-c", "smoke", "--out", "{txt}"]),
        ("evaluate --out existing eval", ["evaluate", "-r", "{run}", "-c", "smoke"]),
        ("train-encoder --out file", ["train-encoder", "--out", "{txt}", "--data", "{data}", "-c", "smoke"]),
        ("train-encoder --out existing", ["train-encoder", "--out", "{run}/encoder", "-c", "smoke"]),
        ("train-autoencoder --out file", ["train-autoencoder", "-r", "{txt}", "--data", "{data}",
                                          "-c", "smoke"]),
        ("embed -i existing index", ["embed", "-e", "{run}/encoder", "-i", "{idx}", "-c", "smoke"]),
        ("embed -i file", ["embed", "-e", "{run}/encoder", "-i", "{txt}", "-c", "smoke"]),
        ("inspect --sheet inside data", ["inspect", "{data}", "--sheet", "{data}/sheet.png"]),
        ("inspect --sheet existing", ["inspect", "{data}", "--sheet", "{txt}"]),
        ("cache-latents existing", ["cache-latents", "-r", "{run}"]),
    ]
    return [Case(n, c, a) for n, a in bad] + [
        Case("inspect twice read-only", c, ["inspect", "{data}", "-c", "smoke"], "ok"),
    ]


def _damaged() -> list[Case]:
    c = "damaged run"
    return [
        Case("model_index.json truncated: generate", c, G, damage="model_index"),
        Case("model_index.json truncated: transfer", c, T, damage="model_index"),
        Case("data.json truncated: augment", c, A, damage="data_json"),
        Case("data.json truncated: evaluate", c, ["evaluate", "-r", "{run}", "-c", "smoke", "--out", "{out}"],
             damage="data_json"),
        Case("latents/info.json truncated: train-diffusion", c, ["train-diffusion", "-r", "{run}",
                                                                 "-c", "smoke", "-q"], damage="latents_info"),
        Case("config.yaml truncated: generate", c, G, damage="config_yaml"),
        Case("config.yaml truncated: enroll-generator", c, EG + ["-i", "bob", "{w1}", "{w2}", "{w3}"],
             damage="config_yaml"),
        Case("enrolled.json damaged: generate (a record only)", c, G, "clean", damage="enrolled_json"),
        Case("enrolled.json damaged: enroll-generator", c, EG + ["-i", "bob", "{w1}", "{w2}", "{w3}"],
             damage="enrolled_json"),
        Case("pipeline missing: generate", c, G, damage="no_pipeline"),
        Case("pipeline denoiser weights truncated: generate", c, G, damage="denoiser_weights"),
        Case("index meta.json truncated: identify", c, ID + ["{w1}"], damage="index_meta"),
        Case("autoencoder weights truncated: cache-latents", c, ["cache-latents", "-r", "{run}",
                                                                 "--overwrite", "-q"], damage="ae_weights"),
    ]


def _paths() -> list[Case]:
    c = "paths"
    return [
        Case("data.json split ../ traversal: augment", c, A + ["--from-real", "split"], damage="traversal"),
        Case("data.json split ../ traversal: generate", c, G + ["--from-real", "split"], damage="traversal"),
        Case("data.json split absolute path: augment", c, A, damage="absolute"),
        Case("data.json data_root missing: evaluate", c, ["evaluate", "-r", "{run}", "-c", "smoke", "--out",
                                                          "{out}"], damage="root_missing"),
    ]


def _layout() -> list[Case]:
    """DATA/<condition>/ID_k is read as walking conditions; a mix of identity and condition folders, or a
    condition folder without identity folders, is refused."""
    c = "layout"
    return [
        Case("condition layout: inspect", c, ["inspect", "{nested}", "-c", "smoke"], expect="ok"),
        Case("mixed identity/condition folders: inspect", c, ["inspect", "{mixed}", "-c", "smoke"]),
        Case("mixed identity/condition folders: run", c, ["run", "--profile", "smoke", "--data", "{mixed}",
                                                          "--out", "{out}", "-q"]),
        Case("mixed identity/condition folders: train-autoencoder", c,
             ["train-autoencoder", "-r", "{out}", "--data", "{mixed}", "-c", "smoke", "-q"]),
        Case("condition folder without identities: inspect", c, ["inspect", "{condempty}", "-c", "smoke"]),
        Case("mixed identity/condition folders: embed", c, ["embed", "-e", "{run}/encoder", "-i", "{out}",
                                                            "--data", "{mixed}", "-c", "smoke", "-q"]),
    ]


def one_command_cases() -> list[Case]:
    return _numbers() + _inputs() + _outputs() + _damaged() + _paths() + _layout()

