// Go's encoding/json words for a JSON value's type, as an UnmarshalTypeError names it ("json:
// cannot unmarshal <type> into Go struct field ..."): what Ollama answers for a field of the
// wrong type. Pure, safe from any thread.
#pragma once

#include <nlohmann/json.hpp>

namespace corral {

// nlohmann's value_t is the same for json and ordered_json. null is not a type error in Go.
inline const char* GoJsonTypeName(nlohmann::json::value_t type) {
  switch (type) {
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "bool";
    default:
      return "number";
  }
}

}  // namespace corral
