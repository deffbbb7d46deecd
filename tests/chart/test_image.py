"""The Dockerfile stays identical to what CI runs (there is no Docker engine to build it here).

- The build stage starts from debian:bookworm and installs exactly the packages of the Makefile's
  DEB_PACKAGES that the build uses: every file the compiler read (ninja's dependency log), the
  tools CMake found and the CMake package files belong to one of them (or to a package they
  depend on directly, as pkg-config -> pkgconf), and no other package is installed.
- Its cmake commands are the ones `make build` runs (`make -n`), in order.
- The runtime stage starts from debian:bookworm-slim and installs the packages of the shared
  libraries `ldd` resolves for the built sluice (except those every Debian image has: what apt
  itself depends on), plus ca-certificates, and nothing else; it runs as a numeric non-root
  user with ENTRYPOINT ["/usr/local/bin/sluice"].

Run by ctest as chart.test_image (SLUICE_BIN, SLUICE_BUILD_DIR), or directly:
    SLUICE_BIN=build/sluice SLUICE_BUILD_DIR=build /usr/bin/python3 tests/chart/test_image.py -v
"""

import json
import os
import re
import shlex
import subprocess
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SLUICE = os.environ.get("SLUICE_BIN", os.path.join(ROOT, "build", "sluice"))
BUILD_DIR = os.environ.get("SLUICE_BUILD_DIR", os.path.dirname(os.path.abspath(SLUICE)))
# Not a library: TLS origination verifies against the system CA bundle.
RUNTIME_EXTRAS = {"ca-certificates"}


def read(path):
    with open(path) as f:
        return f.read()


def dockerfile_stages(text):
    """[(base image, stage name, [instructions])], continuation lines joined, comments dropped."""
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.strip().startswith("#") and not current:
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(" ".join(current.split()))
        current = ""
    stages = []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append((parts[0], name, []))
        else:
            stages[-1][2].append((word.upper(), rest))
    return stages


def run_commands(instructions):
    """The shell commands of the RUN instructions, split at &&."""
    commands = []
    for word, rest in instructions:
        if word == "RUN":
            commands += [c.strip() for c in rest.split("&&")]
    return commands


def apt_installed(instructions):
    packages = []
    for c in run_commands(instructions):
        words = shlex.split(c)
        if "apt-get" in words and "install" in words:
            packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages


def make(*args, stdin=None):
    # The Makefile's own defaults: nothing from a calling make (`make test BUILD=x`) or the
    # environment (?= takes variables from there).
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD", "TYPE", "JOBS")}
    r = subprocess.run(["make", "--no-print-directory", "-s", "-C", ROOT] + list(args),
                       input=stdin, capture_output=True, text=True, check=True, env=env)
    return r.stdout


def owners(paths):
    """{path: package} for the paths dpkg knows (architecture suffixes dropped)."""
    paths = sorted(set(paths))
    out = {}
    for i in range(0, len(paths), 500):
        r = subprocess.run(["dpkg", "-S"] + paths[i:i + 500], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            pkgs, _, path = line.partition(": ")
            if "," in pkgs:  # a shared directory, not a file
                continue
            out[path] = pkgs.split(":")[0]
    return out


def direct_depends(package):
    # Pre-Depends too: python3 reaches /usr/bin/python3 (python3-minimal) through it.
    r = subprocess.run(["dpkg-query", "-W", "-f=${Pre-Depends},${Depends}", package],
                       capture_output=True, text=True, check=True)
    return {re.split(r"[ :(]", alt.strip())[0]
            for dep in r.stdout.split(",") if dep.strip() for alt in dep.split("|")}


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stages = dockerfile_stages(read(os.path.join(ROOT, "Dockerfile")))
        cls.deb_packages = make("-f", "Makefile", "-f", "-", "_print_deb_packages",
                                stdin="_print_deb_packages:\n\t@echo $(DEB_PACKAGES)\n").split()

    def test_stages(self):
        self.assertEqual([(base, name) for base, name, _ in self.stages],
                         [("debian:bookworm", "build"), ("debian:bookworm-slim", None)])

    def test_build_commands_are_make_builds(self):
        # JOBS is $(shell nproc) in the Makefile; the Dockerfile's shell says $(nproc).
        make_build = [c for c in make("-n", "build", "JOBS=$$(nproc)").splitlines()
                      if c.startswith("cmake ")]
        self.assertEqual(len(make_build), 2, make_build)
        docker_build = [c for c in run_commands(self.stages[0][2]) if c.startswith("cmake ")]
        self.assertEqual(docker_build, make_build)
        # ...from the whole source tree, and the binary it copies is the one that builds.
        self.assertIn(("COPY", ". ."), self.stages[0][2])
        self.assertIn(("COPY", "--from=build /src/build/sluice /usr/local/bin/sluice"),
                      self.stages[1][2])
        self.assertIn(("COPY", "--from=build /src/build/sluice-drain /usr/local/bin/sluice-drain"),
                      self.stages[1][2])
        self.assertIn(("WORKDIR", "/src"), self.stages[0][2])

    def test_build_packages_are_the_makefiles_build_packages(self):
        installed = apt_installed(self.stages[0][2])
        self.assertEqual(len(installed), len(set(installed)))
        self.assertEqual(sorted(set(installed) - set(self.deb_packages)), [],
                         "build packages missing from the Makefile's DEB_PACKAGES")
        # What the build used: the files ninja recorded for every object, the tools CMake
        # found, and the CMake package files of find_package.
        deps = subprocess.run(["ninja", "-C", BUILD_DIR, "-t", "deps"], capture_output=True,
                              text=True, check=True).stdout
        used = {line.strip() for line in deps.splitlines() if line.startswith("    ")}
        self.assertGreater(len(used), 100)
        cache = read(os.path.join(BUILD_DIR, "CMakeCache.txt"))
        # SYSTEM_PYTHON: tests/CMakeLists.txt requires python3 at configure time (the first
        # real build of the image, `make test-image`, failed without it).
        for key in ("CMAKE_COMMAND", "CMAKE_MAKE_PROGRAM", "CMAKE_CXX_COMPILER",
                    "CMAKE_C_COMPILER", "PKG_CONFIG_EXECUTABLE", "SYSTEM_PYTHON"):
            path = re.search(rf"^{key}:[A-Z]+=(.+)$", cache, re.M).group(1)
            used |= {path, os.path.realpath(path)}
        for path in re.findall(r"^[A-Za-z0-9_-]+_DIR:PATH=(/\S+/cmake/\S+)$", cache, re.M):
            used |= {os.path.join(path, f) for f in os.listdir(path)}
        owned = set(owners(used).values())
        used_packages = {p for p in self.deb_packages
                         if p in owned or direct_depends(p) & owned}
        self.assertEqual(sorted(installed), sorted(used_packages))

    def test_runtime_packages_are_the_libraries_sluice_links(self):
        ldd = subprocess.run(["ldd", SLUICE], capture_output=True, text=True, check=True).stdout
        libs = re.findall(r"=> (/\S+) \(", ldd)
        self.assertGreater(len(libs), 3)
        paths = set()
        for lib in libs:
            # Merged /usr: dpkg may know a library under either name.
            real = os.path.realpath(lib)
            paths |= {lib, real, re.sub(r"^/usr/lib/", "/lib/", real),
                      re.sub(r"^/lib/", "/usr/lib/", real)}
        found = owners(paths)
        by_lib = {}
        for lib in libs:
            real = os.path.realpath(lib)
            candidates = [lib, real, re.sub(r"^/usr/lib/", "/lib/", real),
                          re.sub(r"^/lib/", "/usr/lib/", real)]
            package = next((found[c] for c in candidates if c in found), None)
            self.assertIsNotNone(package, f"no Debian package owns {lib}")
            by_lib[lib] = package
        needed = set(by_lib.values())
        # Every Debian image has apt, hence what apt depends on (libc6, libgcc-s1, libstdc++6).
        base = direct_depends("apt")
        installed = set(apt_installed(self.stages[1][2]))
        self.assertEqual(sorted(needed - base - installed), [],
                         f"libraries whose packages the runtime stage lacks: {by_lib}")
        self.assertEqual(sorted(installed - needed - RUNTIME_EXTRAS), [],
                         "runtime packages that sluice does not link")
        self.assertEqual(sorted((needed - base) | RUNTIME_EXTRAS), sorted(installed))

    def test_runtime_user_and_entrypoint(self):
        runtime = dict(self.stages[1][2][i] for i in range(len(self.stages[1][2])))
        user = runtime["USER"]
        self.assertRegex(user, r"^[1-9][0-9]*:[1-9][0-9]*$")  # numeric: runAsNonRoot checks it
        uid, gid = user.split(":")
        commands = run_commands(self.stages[1][2])
        self.assertTrue(any(c.startswith("useradd ") and f"--uid {uid}" in c and f"--gid {gid}" in c
                            for c in commands), commands)
        self.assertEqual(json.loads(runtime["ENTRYPOINT"]), ["/usr/local/bin/sluice"])
        # The Helm chart runs the pod as the image's user.
        values = read(os.path.join(ROOT, "charts", "sluice", "values.yaml"))
        self.assertIn(f"runAsUser: {uid}\n", values)
        self.assertIn(f"runAsGroup: {gid}\n", values)

    def test_dockerignore_keeps_builds_out(self):
        ignored = read(os.path.join(ROOT, ".dockerignore")).split()
        for pattern in (".git", "build*/", "tests/chart/node_modules/"):
            self.assertIn(pattern, ignored)


if __name__ == "__main__":
    unittest.main()
