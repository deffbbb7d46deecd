#pragma once
// HTTP method names and llhttp's numbers for them (llhttp_method_t), for heads that do not come
// through llhttp: an HTTP/2 request's :method, the configuration's method lists.
#include <string_view>

namespace sluice {

// llhttp's number for a method name (case-sensitive, as methods are: RFC 9110 §9.1), or -1 for
// a name llhttp does not know as an HTTP method (it would refuse such a request line).
int method_from_name(std::string_view name);

}  // namespace sluice
