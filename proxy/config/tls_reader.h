#pragma once
// The tls sections of the configuration file: a listener's (termination: its certificates) and
// a cluster's (origination: verification, CA, SNI, client certificate). Part of the YAML reader.
#include <string>
#include <vector>

#include "config/config_marks.h"
#include "config/field_reader.h"

namespace sluice {

extern const std::vector<std::string> kListenerTlsKeys;
extern const std::vector<std::string> kClusterTlsKeys;

// Reads the `tls` key of one listener's or one cluster's fields, when it is there: its presence
// turns TLS on. The files it names must be readable; their content is the runtime's business.
void read_listener_tls(const Fields& listener, ListenerTls& tls, ListenerMarks& marks,
                       Diagnostics& diag);
void read_cluster_tls(const Fields& cluster, ClusterTls& tls, ClusterMarks& marks,
                      Diagnostics& diag);

}  // namespace sluice
