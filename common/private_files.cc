#include "common/private_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"

namespace corral {
namespace {

std::string ModeText(mode_t mode) { return absl::StrFormat("%04o", mode & 07777); }

// Sets `path` to `wanted` if it has permission bits outside it. `kind` is "dir" or "file".
void Tighten(const std::string& path, const struct stat& st, mode_t wanted,
             absl::string_view what) {
  if ((st.st_mode & 0777 & ~wanted) == 0) return;
  if (::chmod(path.c_str(), wanted) != 0) {
    CORRAL_LOG(kWarn, "files") << what << " " << path << " has mode " << ModeText(st.st_mode)
                               << " and could not be set to " << ModeText(wanted) << ": "
                               << std::strerror(errno)
                               << "; other users may read it (make the user running Corral its "
                                  "owner, or fix its mode by hand)";
    return;
  }
  CORRAL_LOG(kWarn, "files") << what << " " << path << " had mode " << ModeText(st.st_mode)
                             << ", now " << ModeText(wanted)
                             << " (other users could read it until now)";
}

}  // namespace

absl::Status EnsurePrivateDir(const std::string& dir, absl::string_view what) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot use ", what, " ", dir, ": ", std::strerror(errno)));
    }
    const std::filesystem::path parent = std::filesystem::path(dir).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create ", what, " ", dir, ": ", ec.message()));
    }
    // mkdir applies the umask, which can only remove bits from 0700.
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create ", what, " ", dir, ": ", std::strerror(errno)));
    }
    if (::stat(dir.c_str(), &st) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot use ", what, " ", dir, ": ", std::strerror(errno)));
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat(what, " ", dir, " is not a directory"));
  }
  Tighten(dir, st, 0700, what);
  return absl::OkStatus();
}

absl::Status EnsurePrivateFile(const std::string& path, absl::string_view what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use ", what, " ", path, ": ", std::strerror(errno)));
  }
  if (S_ISREG(st.st_mode)) Tighten(path, st, 0600, what);
  return absl::OkStatus();
}

absl::Status SyncParentDirectory(const std::string& path) {
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", dir, ": ", std::strerror(errno)));
  }
  const bool synced = ::fsync(fd) == 0;
  const int saved = errno;
  ::close(fd);
  if (!synced) {
    return absl::InternalError(absl::StrCat("cannot fsync ", dir, ": ", std::strerror(saved)));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, absl::string_view content) {
  const std::string tmp = path + ".tmp";
  // A temp file left by a crash may have any mode; O_CREAT would keep it, so start afresh.
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", std::strerror(errno)));
  }
  size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const int write_errno = errno;
  const bool written = done == content.size();
  const bool synced = written && ::fsync(fd) == 0;
  const int sync_errno = errno;
  ::close(fd);
  if (!written || !synced) {
    ::unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot write ", tmp, ": ",
                                            std::strerror(written ? sync_errno : write_errno)));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, " to ", path, ": ", std::strerror(saved)));
  }
  return SyncParentDirectory(path);
}

}  // namespace corral
