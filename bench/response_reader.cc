#include "bench/response_reader.h"

#include <algorithm>
#include <charconv>
#include <utility>

#include "common/ascii.h"

namespace corral::bench {
namespace {

constexpr size_t kMaxLine = 64 * 1024;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True when the comma-separated header value lists `token` (case-insensitive).
bool HasToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    const size_t comma = value.find(',');
    if (EqualsIgnoreCase(Trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

ResponseReader::Result ResponseReader::Fail(std::string message) {
  state_ = State::kFailed;
  error_ = std::move(message);
  return Result::kError;
}

bool ResponseReader::HeadLine(std::string_view line) {
  if (state_ == State::kStatusLine) {
    // "HTTP/1.1 200 OK"
    if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ') return false;
    http10_ = line[7] == '0';
    const auto [end, ec] = std::from_chars(line.data() + 9, line.data() + 12, status_);
    if (ec != std::errc() || end != line.data() + 12) return false;
    state_ = State::kHeaders;
    return true;
  }
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = Trim(line.substr(colon + 1));
  if (EqualsIgnoreCase(name, "content-length")) {
    int64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec != std::errc() || end != value.data() + value.size() || n < 0) return false;
    content_length_ = n;
  } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
    chunked_ = HasToken(value, "chunked");
  } else if (EqualsIgnoreCase(name, "connection")) {
    if (HasToken(value, "close")) keep_alive_ = false;
    if (HasToken(value, "keep-alive")) saw_keep_alive_ = true;
  }
  return true;
}

bool ResponseReader::StartBody() {
  if (http10_ && !saw_keep_alive_) keep_alive_ = false;
  if (status_ / 100 == 1 || status_ == 204 || status_ == 304) {
    state_ = State::kDone;
  } else if (chunked_) {
    state_ = State::kChunkSize;
  } else if (content_length_ >= 0) {
    left_ = static_cast<uint64_t>(content_length_);
    state_ = left_ == 0 ? State::kDone : State::kLengthBody;
  } else {
    keep_alive_ = false;
    state_ = State::kUntilClose;
  }
  return true;
}

ResponseReader::Result ResponseReader::Feed(std::string_view data, const BodySink& sink) {
  while (!data.empty()) {
    switch (state_) {
      case State::kStatusLine:
      case State::kHeaders:
      case State::kChunkSize:
      case State::kChunkDataEnd:
      case State::kTrailers: {
        const size_t nl = data.find('\n');
        const size_t take = nl == std::string_view::npos ? data.size() : nl + 1;
        if (line_.size() + take > kMaxLine) return Fail("line longer than 64 KiB");
        line_.append(data.data(), take);
        data.remove_prefix(take);
        if (nl == std::string_view::npos) break;
        std::string_view line(line_);
        line.remove_suffix(1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (state_ == State::kChunkDataEnd) {
          if (!line.empty()) return Fail("no CRLF after chunk data");
          state_ = State::kChunkSize;
        } else if (state_ == State::kChunkSize) {
          const std::string_view hex = Trim(line.substr(0, line.find(';')));
          uint64_t n = 0;
          const auto [end, ec] = std::from_chars(hex.data(), hex.data() + hex.size(), n, 16);
          if (hex.empty() || ec != std::errc() || end != hex.data() + hex.size()) {
            return Fail("bad chunk size line");
          }
          left_ = n;
          state_ = n == 0 ? State::kTrailers : State::kChunkData;
        } else if (state_ == State::kTrailers) {
          if (line.empty()) state_ = State::kDone;
        } else if (line.empty()) {
          if (state_ == State::kStatusLine) return Fail("empty status line");
          StartBody();
        } else if (!HeadLine(line)) {
          return Fail("bad response head line: " + std::string(line.substr(0, 80)));
        }
        line_.clear();
        break;
      }
      case State::kLengthBody:
      case State::kChunkData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(left_, data.size()));
        if (sink) sink(data.substr(0, take));
        data.remove_prefix(take);
        left_ -= take;
        if (left_ == 0) {
          state_ = state_ == State::kLengthBody ? State::kDone : State::kChunkDataEnd;
        }
        break;
      }
      case State::kUntilClose:
        if (sink) sink(data);
        data = {};
        break;
      case State::kDone:
        return Fail("bytes after the end of the response");
      case State::kFailed:
        return Result::kError;
    }
  }
  if (state_ == State::kDone) return Result::kComplete;
  return state_ == State::kFailed ? Result::kError : Result::kNeedMore;
}

ResponseReader::Result ResponseReader::FeedEof() {
  if (state_ == State::kUntilClose || state_ == State::kDone) {
    state_ = State::kDone;
    return Result::kComplete;
  }
  return Fail("connection closed before the end of the response");
}

}  // namespace corral::bench
