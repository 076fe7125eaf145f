// Read-only memory map of a whole file. Models are never copied: tensors point into the map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace squish {

class MappedFile {
 public:
  // Throws squish::Error("<path>: <reason>") when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Bounds-checked cursor over untrusted bytes. Every read checks the remaining length first and
// throws squish::Error("<what>: <problem> at offset N") instead of reading past the end.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string what)
      : data_(data), size_(size), what_(std::move(what)) {}

  size_t offset() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& what() const { return what_; }

  template <typename T>
  T read() {
    T value;
    read_bytes(&value, sizeof(T));
    return value;
  }
  void read_bytes(void* out, size_t n);
  const uint8_t* take(size_t n);  // returns a pointer to n bytes and advances
  void skip(size_t n) { take(n); }
  void seek(size_t offset);
  [[noreturn]] void error(const std::string& problem) const;

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string what_;
};

}  // namespace squish
