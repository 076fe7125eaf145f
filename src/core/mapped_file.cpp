#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace squish {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail("{}: cannot stat: {}", path, std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail("{}: is a directory, expected a file", path);
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = mmap(nullptr, file->size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      fail("{}: cannot map: {}", path, std::strerror(e));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) munmap(const_cast<uint8_t*>(data_), size_);
}

void ByteReader::read_bytes(void* out, size_t n) {
  std::memcpy(out, take(n), n);
}

const uint8_t* ByteReader::take(size_t n) {
  if (n > remaining()) {
    error("truncated: need " + std::to_string(n) + " bytes, " + std::to_string(remaining()) +
          " left");
  }
  const uint8_t* p = data_ + pos_;
  pos_ += n;
  return p;
}

void ByteReader::seek(size_t offset) {
  if (offset > size_) error("offset " + std::to_string(offset) + " is past the end");
  pos_ = offset;
}

void ByteReader::error(const std::string& problem) const {
  fail("{}: {} at offset {}", what_, problem, pos_);
}

}  // namespace squish
