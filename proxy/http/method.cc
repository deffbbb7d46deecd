#include "http/method.h"

#include <llhttp.h>

namespace sluice {

int method_from_name(std::string_view name) {
  // The two that nearly every request has, before the table.
  if (name == "GET") return HTTP_GET;
  if (name == "POST") return HTTP_POST;
#define SLUICE_METHOD(num, symbol, string) \
  if (name == #string) return num;
  HTTP_METHOD_MAP(SLUICE_METHOD)
#undef SLUICE_METHOD
  return -1;
}

}  // namespace sluice
