/*
 * The few Linux calls Node does not expose and rootcast needs to write and read a faithful
 * tree: mknod (device nodes, FIFOs) and the l*xattr family (security.capability and other
 * extended attributes, which never follow a final symlink); the ext4 "top directory" hint for
 * staging directories (FS_IOC_SETFLAGS, `chattr +T`); plus xz decoding with the system
 * liblzma, which is ~1.5x faster than the pure-Rust decoder behind @napi-rs/lzma and streams
 * (the output goes to a callback in bounded chunks instead of one huge buffer). Every function is synchronous
 * and thin; a failure throws an Error whose `code` is the errno name (ENOENT, EPERM, ...)
 * like Node's own fs errors, so callers branch on it the same way.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <lzma.h>
#include <node_api.h>

#define PATH_BUF 4096
#define NAME_BUF 256

static const char *errno_name(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case ENODATA: return "ENODATA";
    case ENOTSUP: return "ENOTSUP";
    case ERANGE: return "ERANGE";
    case E2BIG: return "E2BIG";
    case EIO: return "EIO";
    default: return "EUNKNOWN";
  }
}

static napi_value throw_errno(napi_env env, const char *syscall, const char *path) {
  int err = errno;
  char message[PATH_BUF + 128];
  snprintf(message, sizeof message, "%s: %s, %s '%s'", errno_name(err), strerror(err), syscall, path);
  napi_throw_error(env, errno_name(err), message);
  return NULL;
}

/* Reads argument `index` as a string into buf; throws and returns 0 on failure. */
static int get_string(napi_env env, napi_value value, char *buf, size_t size) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, buf, size, &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expected a string argument");
    return 0;
  }
  if (length >= size - 1) {
    napi_throw_error(env, "ENAMETOOLONG", "argument too long");
    return 0;
  }
  return 1;
}

static int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < expected) {
    napi_throw_type_error(env, "EINVAL", "wrong number of arguments");
    return 0;
  }
  return 1;
}

/* mknod(path, mode, major, minor): mode carries the file type bits (S_IFCHR, S_IFBLK, S_IFIFO). */
static napi_value Mknod(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char path[PATH_BUF];
  uint32_t mode = 0, major = 0, minor = 0;
  if (!get_args(env, info, 4, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  if (napi_get_value_uint32(env, argv[1], &mode) != napi_ok || napi_get_value_uint32(env, argv[2], &major) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &minor) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "mode, major and minor must be numbers");
    return NULL;
  }
  if (mknod(path, (mode_t)mode, makedev(major, minor)) != 0) return throw_errno(env, "mknod", path);
  return NULL;
}

/* lsetxattr(path, name, value: Buffer) */
static napi_value Lsetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char path[PATH_BUF], name[NAME_BUF];
  void *data = NULL;
  size_t length = 0;
  if (!get_args(env, info, 3, argv) || !get_string(env, argv[0], path, sizeof path) ||
      !get_string(env, argv[1], name, sizeof name))
    return NULL;
  if (napi_get_buffer_info(env, argv[2], &data, &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "value must be a Buffer");
    return NULL;
  }
  if (lsetxattr(path, name, data, length, 0) != 0) return throw_errno(env, "lsetxattr", path);
  return NULL;
}

/* llistxattr(path) -> string[] */
static napi_value Llistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  char path[PATH_BUF];
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  ssize_t size;
  char *names = NULL;
  for (;;) {
    size = llistxattr(path, NULL, 0);
    if (size < 0) return throw_errno(env, "llistxattr", path);
    free(names);
    names = malloc(size > 0 ? (size_t)size : 1);
    if (names == NULL) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      return NULL;
    }
    ssize_t got = llistxattr(path, names, (size_t)size);
    if (got >= 0) {
      size = got;
      break;
    }
    if (errno != ERANGE) {
      free(names);
      return throw_errno(env, "llistxattr", path);
    }
  }
  napi_create_array(env, &result);
  uint32_t index = 0;
  for (ssize_t pos = 0; pos < size;) {
    size_t length = strnlen(names + pos, (size_t)(size - pos));
    napi_value name;
    napi_create_string_utf8(env, names + pos, length, &name);
    napi_set_element(env, result, index++, name);
    pos += (ssize_t)length + 1;
  }
  free(names);
  return result;
}

/* lgetxattr(path, name) -> Buffer */
static napi_value Lgetxattr(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  char path[PATH_BUF], name[NAME_BUF];
  if (!get_args(env, info, 2, argv) || !get_string(env, argv[0], path, sizeof path) ||
      !get_string(env, argv[1], name, sizeof name))
    return NULL;
  for (;;) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) return throw_errno(env, "lgetxattr", path);
    void *data = NULL;
    if (napi_create_buffer(env, (size_t)size, &data, &result) != napi_ok) return NULL;
    ssize_t got = size > 0 ? lgetxattr(path, name, data, (size_t)size) : 0;
    if (got == size) return result;
    if (got >= 0 || errno == ERANGE) continue; /* changed under us: ask again */
    return throw_errno(env, "lgetxattr", path);
  }
}

/*
 * xzDecode(input: Buffer, chunk: Buffer, onChunk: (produced: number) => void): decodes the
 * whole .xz stream(s) in `input`, filling `chunk` and calling onChunk(bytes) each time it is
 * full and at the end. The callback must consume `chunk` before returning (it is reused).
 */
static napi_value XzDecode(napi_env env, napi_callback_info info) {
  napi_value argv[3], global;
  void *in = NULL, *out = NULL;
  size_t in_len = 0, out_len = 0;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (napi_get_buffer_info(env, argv[0], &in, &in_len) != napi_ok ||
      napi_get_buffer_info(env, argv[1], &out, &out_len) != napi_ok || out_len == 0) {
    napi_throw_type_error(env, "EINVAL", "input and chunk must be Buffers");
    return NULL;
  }
  napi_get_global(env, &global);
  lzma_stream strm = LZMA_STREAM_INIT;
  lzma_ret ret = lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED);
  if (ret != LZMA_OK) {
    napi_throw_error(env, "EXZ", "cannot initialise the xz decoder");
    return NULL;
  }
  strm.next_in = in;
  strm.avail_in = in_len;
  for (;;) {
    strm.next_out = out;
    strm.avail_out = out_len;
    ret = lzma_code(&strm, LZMA_FINISH);
    size_t produced = out_len - strm.avail_out;
    if (produced > 0) {
      napi_value count, ignored;
      napi_create_uint32(env, (uint32_t)produced, &count);
      if (napi_call_function(env, global, argv[2], 1, &count, &ignored) != napi_ok) {
        lzma_end(&strm);
        return NULL; /* the callback threw: let its exception propagate */
      }
    }
    if (ret == LZMA_STREAM_END) break;
    if (ret != LZMA_OK) {
      lzma_end(&strm);
      const char *why = ret == LZMA_DATA_ERROR   ? "corrupt xz data"
                        : ret == LZMA_BUF_ERROR  ? "truncated xz data"
                        : ret == LZMA_FORMAT_ERROR ? "not xz data"
                        : ret == LZMA_MEM_ERROR  ? "out of memory"
                                                 : "xz decoding failed";
      napi_throw_error(env, "EXZ", why);
      return NULL;
    }
  }
  lzma_end(&strm);
  return NULL;
}

/*
 * markTopDirectory(path) -> boolean: sets FS_TOPDIR_FL (`chattr +T`) on a directory, so that
 * ext2/3/4's Orlov allocator spreads the directories created in it over block groups instead
 * of packing them next to their parent. Best effort: false (never a throw) where the
 * filesystem or the caller cannot set it; true when it is set.
 */
static napi_value MarkTopDirectory(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  char path[PATH_BUF];
  if (!get_args(env, info, 1, argv) || !get_string(env, argv[0], path, sizeof path)) return NULL;
  int ok = 0;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd >= 0) {
    int flags = 0;
    if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
      if (flags & FS_TOPDIR_FL) {
        ok = 1;
      } else {
        flags |= FS_TOPDIR_FL;
        ok = ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0;
      }
    }
    close(fd);
  }
  napi_get_boolean(env, ok, &result);
  return result;
}

/*
 * flockTry(fd, shared): flock(2) without blocking. True when the lock is now held through
 * fd's open file description, false when another holder has it; other errors throw. Saves
 * the util-linux `flock` process for the common, uncontended case.
 */
static napi_value FlockTry(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  int32_t fd = -1;
  bool shared = false;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_bool(env, argv[1], &shared) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "expected (fd: number, shared: boolean)");
    return NULL;
  }
  int rc = flock(fd, (shared ? LOCK_SH : LOCK_EX) | LOCK_NB);
  if (rc != 0 && errno != EWOULDBLOCK) return throw_errno(env, "flock", "(fd)");
  napi_get_boolean(env, rc == 0, &result);
  return result;
}

/*
 * mallocTrim(): glibc's malloc_trim(0). Returns memory freed by a finished phase (a worker
 * thread's heap) to the system; glibc keeps it otherwise once its mmap threshold has grown.
 */
static napi_value MallocTrim(napi_env env, napi_callback_info info) {
  napi_value result;
  (void)info;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

/*
 * mallocMmapThreshold(bytes): mallopt(M_MMAP_THRESHOLD, bytes), which also turns off glibc's
 * dynamic threshold. By default the threshold grows to the size of the largest block freed
 * (1 MiB chunks, here), after which such blocks come from the thread arenas and stay resident
 * once freed; with it fixed they are mapped and unmapped, and a build's peak is lower.
 */
static napi_value MallocMmapThreshold(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value result;
  uint32_t bytes = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_uint32(env, argv[0], &bytes) != napi_ok) {
    napi_throw_type_error(env, NULL, "mallocMmapThreshold(bytes) needs a byte count");
    return NULL;
  }
  napi_get_boolean(env, mallopt(M_MMAP_THRESHOLD, (int)bytes) == 1, &result);
  return result;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"mknod", NULL, Mknod, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lsetxattr", NULL, Lsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"llistxattr", NULL, Llistxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgetxattr", NULL, Lgetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"xzDecode", NULL, XzDecode, NULL, NULL, NULL, napi_enumerable, NULL},
      {"markTopDirectory", NULL, MarkTopDirectory, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flockTry", NULL, FlockTry, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mallocTrim", NULL, MallocTrim, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mallocMmapThreshold", NULL, MallocMmapThreshold, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
