"""Test certificates for sluice's TLS end-to-end tests, made with the `openssl` command
(OpenSSL 3.0, Debian 12) into a temporary directory.

    certs = CertSet.create()     # a few hundred milliseconds; once per test class
    certs.path("ca")             # .../ca.pem
    certs.pair("localhost")      # (.../localhost.pem, .../localhost.key)
    certs.cleanup()

What it holds (ECDSA P-256 keys; every leaf is signed by `ca` unless said otherwise):
  ca                 the test CA (basicConstraints CA:TRUE, keyCertSign)
  localhost          server: SAN DNS:localhost, IP:127.0.0.1 (the default certificate)
  a                  server: SAN DNS:a.test
  wild_b             server: SAN DNS:*.b.test
  other              server: SAN DNS:other.test (for a name mismatch)
  expired            server: SAN DNS:localhost, IP:127.0.0.1, valid 2020-01-01 .. 2020-12-31
                     (made with `openssl ca -startdate/-enddate`: `x509 -req` in OpenSSL 3.0
                     has no way to back-date a certificate)
  rogue_ca           a CA nobody trusts; rogue: server for localhost/127.0.0.1 signed by it,
                     rogue_client: a client certificate signed by it
  client             client certificate (extendedKeyUsage clientAuth), CN=client-pod
  rot_v1 .. rot_v4   servers for localhost/127.0.0.1 with CN "rotation vN" and serial 0x1000+N
  broken.pem         a PEM certificate whose base64 is garbage; truncated.pem: half a real one;
                     empty.pem: an empty file
"""
import os
import shutil
import subprocess
import tempfile

OPENSSL = "/usr/bin/openssl"

CA_EXT = ("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
          "subjectKeyIdentifier=hash\n")
SERVER_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=serverAuth\nsubjectKeyIdentifier=hash\n"
              "authorityKeyIdentifier=keyid\nsubjectAltName=%s\n")
CLIENT_EXT = ("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
              "extendedKeyUsage=clientAuth\nsubjectKeyIdentifier=hash\n"
              "authorityKeyIdentifier=keyid\n")

LOCAL_SAN = "DNS:localhost,IP:127.0.0.1"

# A minimal `openssl ca` configuration, only for the back-dated certificate.
CA_CONF = """
[ca]
default_ca = testca
[testca]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
[server_ext]
""" + SERVER_EXT % LOCAL_SAN


def _run(*args, cwd=None):
    cp = subprocess.run([OPENSSL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        cwd=cwd)
    if cp.returncode != 0:
        raise RuntimeError("openssl %s failed (%d): %s" % (" ".join(args), cp.returncode,
                                                           cp.stderr.decode(errors="replace")))
    return cp.stdout.decode(errors="replace")


class CertSet:
    def __init__(self, directory):
        self.dir = directory

    def path(self, name):
        """The PEM certificate `name` (name.pem), or a file given with its extension."""
        return os.path.join(self.dir, name if "." in name else name + ".pem")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")

    def pair(self, name):
        return self.path(name), self.key(name)

    def read(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- making them ---------------------------------------------------------------------

    @classmethod
    def create(cls):
        d = tempfile.mkdtemp(prefix="sluice-e2e-certs-")
        c = cls(d)
        try:
            c._make_all()
        except BaseException:
            c.cleanup()
            raise
        return c

    def _newkey(self, name):
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", self.key(name))

    def _ext(self, name, text, prefix=""):
        p = os.path.join(self.dir, name + ".ext")
        with open(p, "w") as f:
            f.write(prefix + "[ext]\n" + text)
        return p

    def _ca(self, name, cn):
        self._newkey(name)
        _run("req", "-x509", "-new", "-key", self.key(name), "-subj", "/CN=" + cn,
             "-days", "3650", "-sha256", "-set_serial", "1", "-config",
             self._ext(name, CA_EXT, prefix="[req]\ndistinguished_name=dn\n[dn]\n"),
             "-extensions", "ext", "-out", self.path(name))

    def _leaf(self, name, cn, ext, ca="ca", serial=None):
        self._newkey(name)
        csr = os.path.join(self.dir, name + ".csr")
        _run("req", "-new", "-key", self.key(name), "-subj", "/CN=" + cn, "-out", csr)
        serial = serial if serial is not None else int.from_bytes(os.urandom(8), "big")
        _run("x509", "-req", "-in", csr, "-CA", self.path(ca), "-CAkey", self.key(ca),
             "-set_serial", str(serial), "-days", "30", "-sha256",
             "-extfile", self._ext(name, ext), "-extensions", "ext", "-out", self.path(name))

    def _expired(self, name):
        cadir = os.path.join(self.dir, "ca-db")
        os.mkdir(cadir)
        open(os.path.join(cadir, "index.txt"), "w").close()
        with open(os.path.join(cadir, "serial"), "w") as f:
            f.write("2001\n")
        conf = os.path.join(cadir, "ca.cnf")
        with open(conf, "w") as f:
            f.write(CA_CONF.format(dir=cadir))
        self._newkey(name)
        csr = os.path.join(self.dir, name + ".csr")
        _run("req", "-new", "-key", self.key(name), "-subj", "/CN=expired", "-out", csr)
        _run("ca", "-batch", "-config", conf, "-cert", self.path("ca"), "-keyfile",
             self.key("ca"), "-startdate", "20200101000000Z", "-enddate", "20201231000000Z",
             "-extensions", "server_ext", "-notext", "-in", csr, "-out", self.path(name))

    def _make_all(self):
        self._ca("ca", "sluice e2e test CA")
        self._ca("rogue_ca", "rogue CA")
        self._leaf("localhost", "localhost", SERVER_EXT % LOCAL_SAN)
        self._leaf("a", "a.test", SERVER_EXT % "DNS:a.test")
        self._leaf("wild_b", "wildcard b.test", SERVER_EXT % "DNS:*.b.test")
        self._leaf("other", "other.test", SERVER_EXT % "DNS:other.test")
        self._leaf("rogue", "localhost", SERVER_EXT % LOCAL_SAN, ca="rogue_ca")
        self._leaf("client", "client-pod", CLIENT_EXT)
        self._leaf("rogue_client", "rogue-client", CLIENT_EXT, ca="rogue_ca")
        for n in range(1, 5):
            self._leaf("rot_v%d" % n, "rotation v%d" % n, SERVER_EXT % LOCAL_SAN,
                       serial=0x1000 + n)
        self._expired("expired")
        good = self.read("localhost").decode()
        lines = good.strip().splitlines()
        with open(self.path("broken"), "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nthis is not base64 at all!!\n"
                    "-----END CERTIFICATE-----\n")
        with open(self.path("truncated"), "w") as f:
            f.write("\n".join(lines[:len(lines) // 2]) + "\n")
        open(self.path("empty"), "w").close()

    # ---- reading them --------------------------------------------------------------------

    def subject_cn(self, name):
        out = _run("x509", "-in", self.path(name), "-noout", "-subject", "-nameopt", "multiline")
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("commonName"):
                return line.split("=", 1)[1].strip()
        return None

    def serial(self, name):
        out = _run("x509", "-in", self.path(name), "-noout", "-serial")
        return int(out.strip().split("=", 1)[1], 16)
