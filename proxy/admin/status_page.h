#pragma once
// GET / on the admin listener: a self-contained HTML page (no external assets) that polls
// /stats and shows listeners, clusters, WebSocket sessions and drain progress.
#include <string>

namespace sluice {

const std::string& status_page_html();

}  // namespace sluice
