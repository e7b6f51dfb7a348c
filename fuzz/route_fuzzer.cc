// Fuzzes request classification (dataplane/route.h) on arbitrary method + path.
//
// Input: the bytes before the first '\n' are the method, the rest the path; without a '\n'
// the first byte picks one of the methods a client really sends and the rest is the path.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "dataplane/route.h"
#include "fuzz/fuzz_check.h"

namespace {

using corral::dataplane::ClassifyRoute;
using corral::dataplane::Endpoint;
using corral::dataplane::EndpointName;
using corral::dataplane::kProxyBasePath;
using corral::dataplane::RedirectStatus;
using corral::dataplane::Route;
using corral::dataplane::RouteClass;

constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "DELETE", "PUT", "OPTIONS", "get"};

RouteClass ExpectedClass(Endpoint e) {
  switch (e) {
    case Endpoint::kRoot:
    case Endpoint::kVersion:
    case Endpoint::kTags:
    case Endpoint::kPs:
    case Endpoint::kOpenAIModels:
      return RouteClass::kFleet;
    case Endpoint::kGenerate:
    case Endpoint::kChat:
    case Endpoint::kEmbed:
    case Endpoint::kEmbeddings:
    case Endpoint::kOpenAIChat:
    case Endpoint::kOpenAICompletions:
    case Endpoint::kOpenAIEmbeddings:
    case Endpoint::kOpenAIResponses:
    case Endpoint::kOpenAIMessages:
      return RouteClass::kInference;
    case Endpoint::kProxyHealth:
    case Endpoint::kProxyState:
    case Endpoint::kMetrics:
    case Endpoint::kProxyActiveRequests:
    case Endpoint::kApiHealth:
    case Endpoint::kBackendsHealth:
    case Endpoint::kBackends:
    case Endpoint::kHealth:
      return RouteClass::kProxy;
    case Endpoint::kRedirect:
    case Endpoint::kMethodNotAllowed:
    case Endpoint::kNotFound:
      return RouteClass::kError;
    default:
      return RouteClass::kNodeLocal;
  }
}

void CheckRoute(std::string_view method, std::string_view path) {
  const Route route = ClassifyRoute(method, path);
  const std::string shown = std::string(method) + " " + std::string(path);

  FUZZ_CHECK(route.route_class == ExpectedClass(route.endpoint), "%s", shown.c_str());
  const char* name = EndpointName(route.endpoint);
  FUZZ_CHECK(name != nullptr && *name != '\0' && std::string_view(name) != "unknown", "%s",
             shown.c_str());

  // Under the base URL /api/proxy, a route is the one its node path names, the prefix taken off.
  if (!route.node_path.empty()) {
    FUZZ_CHECK(path.substr(0, kProxyBasePath.size() + 1) == std::string(kProxyBasePath) + "/", "%s",
               shown.c_str());
    const Route plain = ClassifyRoute(method, route.node_path);
    FUZZ_CHECK(plain.endpoint == route.endpoint && plain.openai == route.openai, "%s -> %s",
               shown.c_str(), route.node_path.c_str());
  }

  // openai follows the path alone: every /v1/ path, errors included, under the base URL too.
  auto is_v1 = [](std::string_view p) { return p == "/v1" || p.substr(0, 4) == "/v1/"; };
  const bool under_base = path.substr(0, kProxyBasePath.size()) == kProxyBasePath;
  const bool v1 = is_v1(path) || (under_base && is_v1(path.substr(kProxyBasePath.size())));
  FUZZ_CHECK(route.openai == v1, "%s", shown.c_str());

  // Only known methods reach a handler; anything else on a known path is a 405 or a 404.
  const bool known_method =
      method == "GET" || method == "HEAD" || method == "POST" || method == "DELETE";
  if (!known_method) {
    FUZZ_CHECK(route.route_class == RouteClass::kError, "%s", shown.c_str());
    FUZZ_CHECK(route.endpoint != Endpoint::kRedirect, "%s", shown.c_str());
  }

  switch (route.endpoint) {
    case Endpoint::kBlobHead:
    case Endpoint::kBlobUpload:
    case Endpoint::kOpenAIModel:
      // A parameter is one non-empty path segment, and it is the end of the path.
      FUZZ_CHECK(!route.param.empty() && route.param.find('/') == std::string::npos, "%s",
                 shown.c_str());
      FUZZ_CHECK(path.size() > route.param.size() &&
                     path.substr(path.size() - route.param.size()) == route.param,
                 "%s", shown.c_str());
      break;
    case Endpoint::kRedirect: {
      // The target is the path without its one trailing slash, and is served for this method:
      // following the redirect must not redirect again or miss.
      FUZZ_CHECK(
          path.size() > 1 && path.back() == '/' && route.param == path.substr(0, path.size() - 1),
          "%s", shown.c_str());
      const Route target = ClassifyRoute(method, route.param);
      FUZZ_CHECK(target.route_class != RouteClass::kError, "%s -> %s", shown.c_str(),
                 EndpointName(target.endpoint));
      const int status = RedirectStatus(method);
      FUZZ_CHECK(status == (method == "GET" ? 301 : 307), "%s", shown.c_str());
      break;
    }
    default:
      FUZZ_CHECK(route.param.empty(), "%s param=%s", shown.c_str(), route.param.c_str());
  }

  // Pure: the same request classifies the same way.
  const Route again = ClassifyRoute(method, path);
  FUZZ_CHECK(again.endpoint == route.endpoint && again.param == route.param &&
                 again.openai == route.openai,
             "%s", shown.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (const size_t nl = input.find('\n'); nl != std::string_view::npos) {
    CheckRoute(input.substr(0, nl), input.substr(nl + 1));
  } else if (!input.empty()) {
    const auto method = kMethods[static_cast<uint8_t>(input[0]) % std::size(kMethods)];
    CheckRoute(method, input.substr(1));
  }
  return 0;
}
