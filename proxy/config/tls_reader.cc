// Reads the tls sections: a listener's certificates (one, or several chosen by SNI) and a
// cluster's origination settings. Files are checked for readability only: the runtime builds the
// OpenSSL contexts from them and reports PEM problems itself.
#include "config/tls_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "config/setting_values.h"

namespace sluice {

const std::vector<std::string> kListenerTlsKeys{
    "cert", "key", "certificates", "client_ca", "handshake_timeout", "min_version", "ciphers"};
const std::vector<std::string> kClusterTlsKeys{"verify", "ca", "sni", "cert", "key", "min_version"};

namespace {

const std::vector<std::string> kCertificateKeys{"cert", "key"};

// Why `path` cannot be opened for reading, or "" when it can.
std::string unreadable(const std::string& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return strerror(errno);
  struct stat st;
  std::string why;
  if (fstat(fd, &st) != 0)
    why = strerror(errno);
  else if (S_ISDIR(st.st_mode))
    why = strerror(EISDIR);
  else if (!S_ISREG(st.st_mode))
    why = "not a regular file";
  close(fd);
  return why;
}

class TlsReader : public FieldReader {
 public:
  using FieldReader::FieldReader;

  void listener(const Fields& fields, ListenerTls& tls, ListenerMarks& m) {
    if (const Field* t =
            tls_field(fields, " (TLS needs a certificate: tls: {cert: FILE, key: FILE})"))
      read_termination(*t, tls, m);
  }

  void cluster(const Fields& fields, ClusterTls& tls, ClusterMarks& m) {
    if (const Field* t = tls_field(fields, " (write 'tls: {}' to turn TLS on with the defaults)"))
      read_origination(*t, tls, m);
  }

 private:
  // A file the runtime reads (a PEM certificate, key or CA bundle): it must exist and be readable
  // now, relative to the working directory like admin.token_file. Its content is not looked at
  // here: the runtime builds the TLS contexts and reports PEM problems itself. `optional`: ""
  // means none (the dump writes "" for an unset file).
  bool pem_file(const Fields& fields, std::string_view key, std::string& out, bool optional) {
    const Field* f = fields.get(key);
    std::string s;
    if (!f || !scalar(*f, s, "a file name")) return f == nullptr;
    if (s.empty()) {
      if (optional) {
        out.clear();
        return true;
      }
      diag_.error(f->where(), f->path + ": expected a file name, got an empty string");
      return false;
    }
    out = s;  // kept even when unreadable, so that the pairing checks see it was given
    if (std::string why = unreadable(s); !why.empty()) {
      diag_.error(f->where(), f->path + ": '" + s + "': cannot read it: " + why);
      return false;
    }
    return true;
  }

  void tls_version(const Fields& fields, std::string& out) {
    const Field* f = fields.get("min_version");
    std::string s;
    if (!f || !scalar(*f, s, kExpectedTlsVersion)) return;
    if (!is_tls_version(s)) {
      invalid(*f, s, kExpectedTlsVersion, tls_version_problem(s));
      return;
    }
    out = s;
  }

  // The tls section of a listener or cluster: a map; an empty value is an empty map.
  const Field* tls_field(const Fields& f, const char* as_bool_hint) {
    const Field* t = f.get("tls");
    if (!t || t->value.IsMap() || t->value.IsNull()) return t;
    std::string hint;
    if (t->value.IsScalar() && parse_bool(t->value.Scalar()))
      hint = *parse_bool(t->value.Scalar()) ? as_bool_hint : " (leave 'tls' out for plain HTTP)";
    diag_.error(t->where(), t->path + ": expected a map, got " + describe(t->value) + hint);
    return nullptr;
  }

  // Termination: one certificate (cert + key) or several chosen by SNI (certificates), not both.
  void read_termination(const Field& section, ListenerTls& tls, ListenerMarks& m) {
    tls.enabled = true;
    Fields f(section.value, section.path, kListenerTlsKeys, diag_);
    const Field* cert = f.get("cert");
    const Field* key = f.get("key");
    const Field* list = f.get("certificates");
    if (list && (cert || key)) {
      diag_.error(where_of(list->key),
                  section.path +
                      ": give either 'cert' and 'key' (one certificate) or 'certificates' "
                      "(several, chosen by SNI), not both");
    } else if (list) {
      read_certificates(*list, tls);
    } else if (cert || key) {
      TlsCertificate c;
      read_key_pair(f, section.path, where_of(section.key), c, false);
      tls.certificates.push_back(std::move(c));
    } else {
      diag_.error(where_of(section.key),
                  section.path +
                      ": a TLS listener needs a certificate: 'cert: FILE' and 'key: FILE', or "
                      "'certificates: [{cert: FILE, key: FILE}, ...]'");
    }
    pem_file(f, "client_ca", tls.client_ca, true);
    if (const Field* h = f.get("handshake_timeout");
        h && duration(f, "handshake_timeout", tls.handshake_timeout) &&
        tls.handshake_timeout.count() == 0)
      diag_.error(h->where(), h->path +
                                  ": must be above 0 (a client that has not finished its "
                                  "handshake within this is disconnected)");
    tls_version(f, tls.min_version);
    if (const Field* c = f.get("ciphers")) {
      m.tls_ciphers = c->where();
      scalar(*c, tls.ciphers, "an OpenSSL cipher list such as 'ECDHE+AESGCM:ECDHE+CHACHA20'");
    }
  }

  void read_certificates(const Field& f, ListenerTls& tls) {
    const char* expected = "a list of {cert: FILE, key: FILE}";
    if (!expect(f, f.value.IsSequence(), expected)) return;
    if (f.value.size() == 0) {
      diag_.error(f.where(), f.path +
                                 ": empty; give at least one {cert: FILE, key: FILE} (the "
                                 "first is the default)");
      return;
    }
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      std::string path = f.path + "[" + std::to_string(i) + "]";
      if (!node.IsMap()) {
        diag_.error(where_of(node),
                    path + ": expected a map {cert: FILE, key: FILE}, got " + describe(node));
        continue;
      }
      Fields cf(node, path, kCertificateKeys, diag_);
      TlsCertificate c;
      read_key_pair(cf, path, where_of(node), c, false);
      tls.certificates.push_back(std::move(c));
    }
  }

  // A certificate and its private key: both, or (when `optional`) neither. `self` is where to
  // report that neither was given.
  void read_key_pair(const Fields& f, const std::string& path, const Where& self,
                     TlsCertificate& out, bool optional) {
    const Field* cert = f.get("cert");
    const Field* key = f.get("key");
    pem_file(f, "cert", out.cert, optional);
    pem_file(f, "key", out.key, optional);
    // Given: present, and not "" where "" means none. A wrong value was reported by pem_file
    // already; it still counts as given, so that one mistake makes one error.
    auto given = [optional](const Field* x) {
      return x && !(optional && x->value.IsScalar() && x->value.Scalar().empty());
    };
    if (given(cert) && !given(key))
      diag_.error(key ? key->where() : where_of(cert->key),
                  path + ": 'cert' needs its 'key' (the certificate's private key, PEM)");
    else if (given(key) && !given(cert))
      diag_.error(cert ? cert->where() : where_of(key->key),
                  path + ": 'key' needs its 'cert' (the certificate chain, PEM)");
    else if (!optional && !cert && !key)
      diag_.error(self, path + ": needs 'cert' and 'key'");
  }

  // Origination: `tls: {}` turns it on with the defaults (verification on, the system's CAs).
  void read_origination(const Field& section, ClusterTls& tls, ClusterMarks& m) {
    tls.enabled = true;
    m.tls = where_of(section.key);
    Fields f(section.value, section.path, kClusterTlsKeys, diag_);
    if (const Field* v = f.get("verify")) m.tls_verify = v->where();
    boolean(f, "verify", tls.verify);
    pem_file(f, "ca", tls.ca, true);
    if (const Field* n = f.get("sni")) {
      std::string s;
      if (scalar(*n, s, kExpectedSni)) {
        const bool bracketed = s.size() > 2 && s.front() == '[' && s.back() == ']';
        if (s.empty() || is_valid_sni(s))
          tls.sni = s;  // "" is the default: the endpoint's host name (validate.cc: Unix)
        else if (is_ip_literal(bracketed ? s.substr(1, s.size() - 2) : s))
          invalid(*n, s, kExpectedSni, ": SNI carries a host name, never an IP address (RFC 6066)");
        else if (s.substr(0, 2) == "*.")
          invalid(*n, s, kExpectedSni,
                  ": a wildcard matches certificates, it is not a name to ask for");
        else if (parse_host_port(s))
          invalid(*n, s, kExpectedSni, ": without a port");
        else
          invalid(*n, s, kExpectedSni);
      }
    }
    TlsCertificate client;
    read_key_pair(f, section.path, where_of(section.key), client, true);
    tls.cert = client.cert;
    tls.key = client.key;
    tls_version(f, tls.min_version);
  }
};

}  // namespace

void read_listener_tls(const Fields& listener, ListenerTls& tls, ListenerMarks& marks,
                       Diagnostics& diag) {
  TlsReader(diag).listener(listener, tls, marks);
}

void read_cluster_tls(const Fields& cluster, ClusterTls& tls, ClusterMarks& marks,
                      Diagnostics& diag) {
  TlsReader(diag).cluster(cluster, tls, marks);
}

}  // namespace sluice
