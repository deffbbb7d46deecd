#include "admin/status_page.h"

namespace sluice {

const std::string& status_page_html() {
  static const std::string page = R"HTML(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sluice</title></head>
<body><h1>sluice</h1><pre id="stats">loading…</pre>
<script>
async function tick() {
  try {
    const r = await fetch('/stats', {cache: 'no-store'});
    document.getElementById('stats').textContent = JSON.stringify(await r.json(), null, 2);
  } catch (e) {
    document.getElementById('stats').textContent = 'sluice is not answering: ' + e;
  }
}
tick();
setInterval(tick, 1000);
</script></body></html>
)HTML";
  return page;
}

}  // namespace sluice
