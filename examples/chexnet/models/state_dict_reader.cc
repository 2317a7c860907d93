// torch.save files without Python: a closed pickle interpreter over the zip
// and legacy container formats. See state_dict_reader.h.
#include "examples/chexnet/models/state_dict_reader.h"

#include <c10/util/Exception.h>
#include <caffe2/serialize/inline_container.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kolo {
namespace chexnet {
namespace {

// ---------------------------------------------------------------------------
// Python values as far as state_dict files need them. Containers have
// reference semantics (shared_ptr), as in Python: the pickle memo and
// SETITEMS/APPENDS mutate objects that are also referenced elsewhere.
// ---------------------------------------------------------------------------
enum class Kind {
  kNone,
  kBool,
  kInt,
  kBigInt,  // an integer wider than 64 bits: text holds its little-endian bytes
  kFloat,
  kString,
  kBytes,
  kTuple,
  kList,
  kDict,
  kGlobal,   // a class or function named by GLOBAL: text is "module.name"
  kObject,   // an instance of an unknown class: text is the class name
  kStorage,  // tensor is the whole storage, one dimension
  kTensor,
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  explicit Value(Kind k) : kind(k) {}
  Kind kind;
  int64_t integer = 0;          // kBool, kInt
  double real = 0;              // kFloat
  std::string text;             // kString, kBytes, kBigInt, kGlobal, kObject
  std::vector<ValuePtr> items;  // kTuple, kList
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // kDict, in order
  torch::Tensor tensor;                                // kStorage, kTensor
};

ValuePtr NewValue(Kind kind) { return std::make_shared<Value>(kind); }

ValuePtr NewInt(int64_t v) {
  ValuePtr value = NewValue(Kind::kInt);
  value->integer = v;
  return value;
}

ValuePtr NewText(Kind kind, std::string text) {
  ValuePtr value = NewValue(kind);
  value->text = std::move(text);
  return value;
}

// How a value is described in error messages.
std::string Describe(const Value& value) {
  switch (value.kind) {
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return "a bool";
    case Kind::kInt:
    case Kind::kBigInt:
      return "an int";
    case Kind::kFloat:
      return "a float";
    case Kind::kString:
      return "a str";
    case Kind::kBytes:
      return "a bytes object";
    case Kind::kTuple:
      return "a tuple";
    case Kind::kList:
      return "a list";
    case Kind::kDict:
      return "a dict";
    case Kind::kGlobal:
      return absl::StrCat("the class or function ", value.text);
    case Kind::kObject:
      return absl::StrCat("a ", value.text, " object");
    case Kind::kStorage:
      return "a storage";
    case Kind::kTensor:
      return "a tensor";
  }
  return "an unknown value";
}

bool IsString(const Value& value) {
  return value.kind == Kind::kString || value.kind == Kind::kBytes;
}

bool IsSequence(const Value& value) {
  return value.kind == Kind::kTuple || value.kind == Kind::kList;
}

// Python dict assignment: replaces the value of an equal string or int key.
void DictSet(Value& dict, ValuePtr key, ValuePtr item) {
  for (auto& [existing_key, existing_item] : dict.entries) {
    const bool same_string = IsString(*existing_key) && IsString(*key) &&
                             existing_key->text == key->text;
    const bool same_int = existing_key->kind == Kind::kInt &&
                          key->kind == Kind::kInt &&
                          existing_key->integer == key->integer;
    if (same_string || same_int) {
      existing_item = std::move(item);
      return;
    }
  }
  dict.entries.emplace_back(std::move(key), std::move(item));
}

const Value* DictGet(const Value& dict, const std::string& key) {
  for (const auto& [entry_key, entry_item] : dict.entries) {
    if (IsString(*entry_key) && entry_key->text == key) return entry_item.get();
  }
  return nullptr;
}

// The storage classes torch.save names (torch.FloatStorage, ... and the
// untyped storage of newer releases, whose element count is in bytes).
std::optional<torch::Dtype> StorageDtype(const std::string& global) {
  static const std::map<std::string, torch::Dtype> kTypes = {
      {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64},
      {"HalfStorage", torch::kFloat16},  {"BFloat16Storage", torch::kBFloat16},
      {"LongStorage", torch::kInt64},    {"IntStorage", torch::kInt32},
      {"ShortStorage", torch::kInt16},   {"CharStorage", torch::kInt8},
      {"ByteStorage", torch::kUInt8},    {"BoolStorage", torch::kBool},
      {"UntypedStorage", torch::kUInt8}, {"_UntypedStorage", torch::kUInt8},
  };
  for (const char* module : {"torch.", "torch.storage.", "torch.cuda."}) {
    if (global.rfind(module, 0) == 0) {
      auto it = kTypes.find(global.substr(std::strlen(module)));
      if (it != kTypes.end()) return it->second;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The pickle interpreter.
// ---------------------------------------------------------------------------

const char* OpcodeName(uint8_t op) {
  switch (op) {
    case 0x28:
      return "MARK";
    case 0x2e:
      return "STOP";
    case 0x30:
      return "POP";
    case 0x31:
      return "POP_MARK";
    case 0x32:
      return "DUP";
    case 0x46:
      return "FLOAT";
    case 0x49:
      return "INT";
    case 0x4a:
      return "BININT";
    case 0x4b:
      return "BININT1";
    case 0x4c:
      return "LONG";
    case 0x4d:
      return "BININT2";
    case 0x4e:
      return "NONE";
    case 0x50:
      return "PERSID";
    case 0x51:
      return "BINPERSID";
    case 0x52:
      return "REDUCE";
    case 0x53:
      return "STRING";
    case 0x54:
      return "BINSTRING";
    case 0x55:
      return "SHORT_BINSTRING";
    case 0x56:
      return "UNICODE";
    case 0x58:
      return "BINUNICODE";
    case 0x61:
      return "APPEND";
    case 0x62:
      return "BUILD";
    case 0x63:
      return "GLOBAL";
    case 0x64:
      return "DICT";
    case 0x7d:
      return "EMPTY_DICT";
    case 0x65:
      return "APPENDS";
    case 0x67:
      return "GET";
    case 0x68:
      return "BINGET";
    case 0x69:
      return "INST";
    case 0x6a:
      return "LONG_BINGET";
    case 0x6c:
      return "LIST";
    case 0x5d:
      return "EMPTY_LIST";
    case 0x6f:
      return "OBJ";
    case 0x70:
      return "PUT";
    case 0x71:
      return "BINPUT";
    case 0x72:
      return "LONG_BINPUT";
    case 0x73:
      return "SETITEM";
    case 0x74:
      return "TUPLE";
    case 0x29:
      return "EMPTY_TUPLE";
    case 0x75:
      return "SETITEMS";
    case 0x47:
      return "BINFLOAT";
    case 0x80:
      return "PROTO";
    case 0x81:
      return "NEWOBJ";
    case 0x82:
      return "EXT1";
    case 0x83:
      return "EXT2";
    case 0x84:
      return "EXT4";
    case 0x85:
      return "TUPLE1";
    case 0x86:
      return "TUPLE2";
    case 0x87:
      return "TUPLE3";
    case 0x88:
      return "NEWTRUE";
    case 0x89:
      return "NEWFALSE";
    case 0x8a:
      return "LONG1";
    case 0x8b:
      return "LONG4";
    case 0x42:
      return "BINBYTES";
    case 0x43:
      return "SHORT_BINBYTES";
    case 0x8c:
      return "SHORT_BINUNICODE";
    case 0x8d:
      return "BINUNICODE8";
    case 0x8e:
      return "BINBYTES8";
    case 0x8f:
      return "EMPTY_SET";
    case 0x90:
      return "ADDITEMS";
    case 0x91:
      return "FROZENSET";
    case 0x92:
      return "NEWOBJ_EX";
    case 0x93:
      return "STACK_GLOBAL";
    case 0x94:
      return "MEMOIZE";
    case 0x95:
      return "FRAME";
    case 0x96:
      return "BYTEARRAY8";
    case 0x97:
      return "NEXT_BUFFER";
    case 0x98:
      return "READONLY_BUFFER";
  }
  return "unknown";
}

// Resolves the persistent id of BINPERSID (a tuple naming a storage) to a
// value; errors are reported with the opcode's offset by the caller.
using PersistentLoader = std::function<absl::StatusOr<ValuePtr>(const Value&)>;

// Interprets one pickle (up to and including STOP) that starts at `start` in
// `data`. Offsets in errors are relative to the start of `data`.
class Unpickler {
 public:
  Unpickler(const char* data, size_t size, size_t start, std::string where,
            PersistentLoader persistent_loader)
      : data_(data),
        size_(size),
        pos_(start),
        where_(std::move(where)),
        persistent_loader_(std::move(persistent_loader)) {}

  absl::StatusOr<ValuePtr> Load();

  // The offset just past STOP once Load() succeeded.
  size_t position() const { return pos_; }

 private:
  absl::Status Step(uint8_t op, bool* stop);
  absl::Status Call(const ValuePtr& callable, const ValuePtr& args,
                    ValuePtr* result);

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: %s (pickle opcode %s, 0x%02x, at offset %d)",
                        where_, what, OpcodeName(op_), op_, op_offset_));
  }
  absl::Status Truncated() const {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated pickle: opcode %s (0x%02x) at offset %d runs past the "
        "end of the data (%d bytes)",
        where_, OpcodeName(op_), op_, op_offset_, size_));
  }

  bool Read(size_t n, const char** bytes) {
    if (n > size_ - pos_) return false;
    *bytes = data_ + pos_;
    pos_ += n;
    return true;
  }
  // Reads an n-byte little-endian unsigned integer, n <= 8.
  bool ReadUnsigned(size_t n, uint64_t* v) {
    const char* bytes;
    if (!Read(n, &bytes)) return false;
    *v = 0;
    for (size_t i = 0; i < n; ++i) {
      *v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i])) << (8 * i);
    }
    return true;
  }
  bool ReadLine(std::string* line) {
    const void* newline = std::memchr(data_ + pos_, '\n', size_ - pos_);
    if (newline == nullptr) return false;
    const size_t end = static_cast<const char*>(newline) - data_;
    line->assign(data_ + pos_, end - pos_);
    pos_ = end + 1;
    return true;
  }

  absl::Status Push(ValuePtr value) {
    stack_.push_back(std::move(value));
    return absl::OkStatus();
  }
  absl::Status Pop(ValuePtr* value) {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    *value = std::move(stack_.back());
    stack_.pop_back();
    return absl::OkStatus();
  }
  absl::Status Top(Value** value) {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    *value = stack_.back().get();
    return absl::OkStatus();
  }
  // Everything above the innermost MARK, which is removed.
  absl::Status PopToMark(std::vector<ValuePtr>* items) {
    if (marks_.empty()) return Error("no MARK on the stack");
    const size_t mark = marks_.back();
    marks_.pop_back();
    items->assign(std::make_move_iterator(stack_.begin() + mark),
                  std::make_move_iterator(stack_.end()));
    stack_.resize(mark);
    return absl::OkStatus();
  }
  // Objects below the innermost MARK may not be popped by ordinary opcodes.
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }

  const char* data_;
  size_t size_;
  size_t pos_;
  std::string where_;
  PersistentLoader persistent_loader_;
  uint8_t op_ = 0;
  size_t op_offset_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
};

absl::StatusOr<ValuePtr> Unpickler::Load() {
  bool stop = false;
  while (!stop) {
    op_offset_ = pos_;
    op_ = 0;
    const char* byte;
    if (!Read(1, &byte)) {
      return absl::DataLossError(absl::StrFormat(
          "%s: truncated pickle: no STOP before the end of the data at offset "
          "%d",
          where_, size_));
    }
    op_ = static_cast<uint8_t>(*byte);
    absl::Status status = Step(op_, &stop);
    if (!status.ok()) return status;
  }
  if (stack_.size() != 1 || !marks_.empty()) {
    return Error(absl::StrCat("malformed pickle: ", stack_.size(),
                              " objects and ", marks_.size(),
                              " marks left at STOP"));
  }
  return stack_.back();
}

absl::Status Unpickler::Step(uint8_t op, bool* stop) {
  uint64_t n = 0;
  const char* bytes = nullptr;
  ValuePtr value;
  std::vector<ValuePtr> items;
  switch (op) {
    case 0x80: {  // PROTO
      if (!ReadUnsigned(1, &n)) return Truncated();
      if (n < 2 || n > 5) {
        return Error(absl::StrCat("unsupported pickle protocol ", n));
      }
      return absl::OkStatus();
    }
    case 0x95:  // FRAME: a length prefix only
      return ReadUnsigned(8, &n) ? absl::OkStatus() : Truncated();
    case 0x2e:  // STOP
      *stop = true;
      return absl::OkStatus();

    case 0x63: {  // GLOBAL "module\nname\n"
      std::string module, name;
      if (!ReadLine(&module) || !ReadLine(&name)) return Truncated();
      return Push(NewText(Kind::kGlobal, module + "." + name));
    }
    case 0x93: {  // STACK_GLOBAL
      ValuePtr module, name;
      if (auto s = Pop(&name); !s.ok()) return s;
      if (auto s = Pop(&module); !s.ok()) return s;
      if (module->kind != Kind::kString || name->kind != Kind::kString) {
        return Error("STACK_GLOBAL needs two strings");
      }
      return Push(NewText(Kind::kGlobal, module->text + "." + name->text));
    }
    case 0x51: {  // BINPERSID
      if (auto s = Pop(&value); !s.ok()) return s;
      absl::StatusOr<ValuePtr> loaded = persistent_loader_(*value);
      if (!loaded.ok()) {
        return absl::Status(
            loaded.status().code(),
            absl::StrFormat("%s (persistent id at offset %d)",
                            loaded.status().message(), op_offset_));
      }
      return Push(*std::move(loaded));
    }

    case 0x71:    // BINPUT
    case 0x72: {  // LONG_BINPUT
      if (!ReadUnsigned(op == 0x71 ? 1 : 4, &n)) return Truncated();
      Value* top;
      if (auto s = Top(&top); !s.ok()) return s;
      memo_[n] = stack_.back();
      return absl::OkStatus();
    }
    case 0x94: {  // MEMOIZE
      Value* top;
      if (auto s = Top(&top); !s.ok()) return s;
      const uint64_t index = memo_.size();
      memo_[index] = stack_.back();
      return absl::OkStatus();
    }
    case 0x68:    // BINGET
    case 0x6a: {  // LONG_BINGET
      if (!ReadUnsigned(op == 0x68 ? 1 : 4, &n)) return Truncated();
      auto it = memo_.find(n);
      if (it == memo_.end()) {
        return Error(absl::StrCat("memo entry ", n, " was never stored"));
      }
      return Push(it->second);
    }

    case 0x28:  // MARK
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case 0x30:  // POP
      return Pop(&value);
    case 0x31:  // POP_MARK
      return PopToMark(&items);
    case 0x32: {  // DUP
      Value* top;
      if (auto s = Top(&top); !s.ok()) return s;
      return Push(stack_.back());
    }

    case 0x4e:  // NONE
      return Push(NewValue(Kind::kNone));
    case 0x88:    // NEWTRUE
    case 0x89: {  // NEWFALSE
      value = NewValue(Kind::kBool);
      value->integer = op == 0x88 ? 1 : 0;
      return Push(std::move(value));
    }
    case 0x4a: {  // BININT: 4-byte signed
      if (!ReadUnsigned(4, &n)) return Truncated();
      return Push(NewInt(static_cast<int32_t>(static_cast<uint32_t>(n))));
    }
    case 0x4b:    // BININT1
    case 0x4d: {  // BININT2
      if (!ReadUnsigned(op == 0x4b ? 1 : 2, &n)) return Truncated();
      return Push(NewInt(static_cast<int64_t>(n)));
    }
    case 0x8a:    // LONG1
    case 0x8b: {  // LONG4: little-endian two's complement of n bytes
      if (!ReadUnsigned(op == 0x8a ? 1 : 4, &n)) return Truncated();
      if (!Read(n, &bytes)) return Truncated();
      if (n > 8) return Push(NewText(Kind::kBigInt, std::string(bytes, n)));
      uint64_t bits = 0;
      for (uint64_t i = 0; i < n; ++i) {
        bits |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i]))
                << (8 * i);
      }
      if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) {
        bits |= ~uint64_t{0} << (8 * n);  // sign-extend
      }
      return Push(NewInt(static_cast<int64_t>(bits)));
    }
    case 0x47: {  // BINFLOAT: big-endian IEEE double
      if (!Read(8, &bytes)) return Truncated();
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) {
        bits = (bits << 8) | static_cast<uint8_t>(bytes[i]);
      }
      value = NewValue(Kind::kFloat);
      std::memcpy(&value->real, &bits, sizeof(bits));
      return Push(std::move(value));
    }

    // Python 2 str (BINSTRING) is read as text, as torch.load does.
    case 0x58:    // BINUNICODE
    case 0x8c:    // SHORT_BINUNICODE
    case 0x8d:    // BINUNICODE8
    case 0x54:    // BINSTRING
    case 0x55:    // SHORT_BINSTRING
    case 0x42:    // BINBYTES
    case 0x43:    // SHORT_BINBYTES
    case 0x8e: {  // BINBYTES8
      const size_t width = (op == 0x8c || op == 0x55 || op == 0x43) ? 1
                           : (op == 0x8d || op == 0x8e)             ? 8
                                                                    : 4;
      if (!ReadUnsigned(width, &n)) return Truncated();
      if (op == 0x54 && (n & 0x80000000u)) return Error("negative length");
      if (!Read(n, &bytes)) return Truncated();
      const bool is_bytes = op == 0x42 || op == 0x43 || op == 0x8e;
      return Push(NewText(is_bytes ? Kind::kBytes : Kind::kString,
                          std::string(bytes, n)));
    }

    case 0x29:  // EMPTY_TUPLE
      return Push(NewValue(Kind::kTuple));
    case 0x85:    // TUPLE1
    case 0x86:    // TUPLE2
    case 0x87: {  // TUPLE3
      const size_t count = op - 0x84;
      if (stack_.size() < Floor() + count) return Error("stack underflow");
      value = NewValue(Kind::kTuple);
      value->items.assign(stack_.end() - count, stack_.end());
      stack_.resize(stack_.size() - count);
      return Push(std::move(value));
    }
    case 0x74:  // TUPLE
    case 0x6c:  // LIST
      if (auto s = PopToMark(&items); !s.ok()) return s;
      value = NewValue(op == 0x74 ? Kind::kTuple : Kind::kList);
      value->items = std::move(items);
      return Push(std::move(value));
    case 0x5d:  // EMPTY_LIST
      return Push(NewValue(Kind::kList));
    case 0x7d:  // EMPTY_DICT
      return Push(NewValue(Kind::kDict));
    case 0x64:  // DICT
      if (auto s = PopToMark(&items); !s.ok()) return s;
      if (items.size() % 2 != 0) return Error("odd number of dict items");
      value = NewValue(Kind::kDict);
      for (size_t i = 0; i < items.size(); i += 2) {
        DictSet(*value, items[i], items[i + 1]);
      }
      return Push(std::move(value));
    case 0x73: {  // SETITEM
      ValuePtr key;
      if (auto s = Pop(&value); !s.ok()) return s;
      if (auto s = Pop(&key); !s.ok()) return s;
      Value* dict;
      if (auto s = Top(&dict); !s.ok()) return s;
      if (dict->kind != Kind::kDict) {
        return Error(absl::StrCat("SETITEM on ", Describe(*dict)));
      }
      DictSet(*dict, std::move(key), std::move(value));
      return absl::OkStatus();
    }
    case 0x75: {  // SETITEMS
      if (auto s = PopToMark(&items); !s.ok()) return s;
      Value* dict;
      if (auto s = Top(&dict); !s.ok()) return s;
      if (dict->kind != Kind::kDict) {
        return Error(absl::StrCat("SETITEMS on ", Describe(*dict)));
      }
      if (items.size() % 2 != 0) return Error("odd number of dict items");
      for (size_t i = 0; i < items.size(); i += 2) {
        DictSet(*dict, items[i], items[i + 1]);
      }
      return absl::OkStatus();
    }
    case 0x61:    // APPEND
    case 0x65: {  // APPENDS
      if (op == 0x61) {
        if (auto s = Pop(&value); !s.ok()) return s;
        items.push_back(std::move(value));
      } else if (auto s = PopToMark(&items); !s.ok()) {
        return s;
      }
      Value* list;
      if (auto s = Top(&list); !s.ok()) return s;
      if (list->kind != Kind::kList) {
        return Error(absl::StrCat(OpcodeName(op), " on ", Describe(*list)));
      }
      list->items.insert(list->items.end(), items.begin(), items.end());
      return absl::OkStatus();
    }

    case 0x52:    // REDUCE: callable(*args)
    case 0x81:    // NEWOBJ: cls.__new__(cls, *args)
    case 0x92: {  // NEWOBJ_EX: same with keyword arguments (ignored)
      ValuePtr callable, args, kwargs;
      if (op == 0x92) {
        if (auto s = Pop(&kwargs); !s.ok()) return s;
      }
      if (auto s = Pop(&args); !s.ok()) return s;
      if (auto s = Pop(&callable); !s.ok()) return s;
      if (auto s = Call(callable, args, &value); !s.ok()) return s;
      return Push(std::move(value));
    }
    case 0x62: {  // BUILD: obj.__setstate__(state)
      ValuePtr state;
      if (auto s = Pop(&state); !s.ok()) return s;
      Value* object;
      if (auto s = Top(&object); !s.ok()) return s;
      // An OrderedDict's state is its attributes (state_dict's _metadata:
      // module versions, not needed to load tensors by name); instances of
      // unknown classes stay opaque.
      if (object->kind == Kind::kDict || object->kind == Kind::kObject) {
        return absl::OkStatus();
      }
      return Error(absl::StrCat("BUILD on ", Describe(*object)));
    }
  }
  return Error("unsupported opcode");
}

absl::Status Unpickler::Call(const ValuePtr& callable, const ValuePtr& args,
                             ValuePtr* result) {
  if (callable->kind != Kind::kGlobal) {
    return Error(absl::StrCat("cannot call ", Describe(*callable)));
  }
  if (args->kind != Kind::kTuple) {
    return Error(absl::StrCat("arguments of ", callable->text, " are ",
                              Describe(*args), ", not a tuple"));
  }
  const std::string& name = callable->text;
  const std::vector<ValuePtr>& a = args->items;

  if (name == "collections.OrderedDict" || name == "builtins.dict" ||
      name == "__builtin__.dict") {
    *result = NewValue(Kind::kDict);
    if (a.empty()) return absl::OkStatus();
    // OrderedDict(pairs): Python 2 pickles OrderedDicts this way.
    if (a.size() != 1)
      return Error(absl::StrCat(name, " with ", a.size(), " arguments"));
    if (a[0]->kind == Kind::kDict) {
      (*result)->entries = a[0]->entries;
      return absl::OkStatus();
    }
    if (!IsSequence(*a[0])) {
      return Error(absl::StrCat(name, " of ", Describe(*a[0])));
    }
    for (const ValuePtr& pair : a[0]->items) {
      if (!IsSequence(*pair) || pair->items.size() != 2) {
        return Error(absl::StrCat(name, " item is not a (key, value) pair"));
      }
      DictSet(**result, pair->items[0], pair->items[1]);
    }
    return absl::OkStatus();
  }

  // _rebuild_tensor(storage, storage_offset, size, stride) and
  // _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata]).
  if (name == "torch._utils._rebuild_tensor_v2" ||
      name == "torch._utils._rebuild_tensor") {
    if (a.size() < 4 || a[0]->kind != Kind::kStorage ||
        a[1]->kind != Kind::kInt || !IsSequence(*a[2]) || !IsSequence(*a[3]) ||
        a[2]->items.size() != a[3]->items.size()) {
      return Error(absl::StrCat("malformed arguments of ", name));
    }
    const torch::Tensor& storage = a[0]->tensor;
    const int64_t offset = a[1]->integer;
    std::vector<int64_t> sizes, strides;
    int64_t last = offset;  // the largest element index the view touches
    bool empty = false;
    for (size_t i = 0; i < a[2]->items.size(); ++i) {
      const Value& size = *a[2]->items[i];
      const Value& stride = *a[3]->items[i];
      if (size.kind != Kind::kInt || stride.kind != Kind::kInt ||
          size.integer < 0 || stride.integer < 0) {
        return Error(absl::StrCat("malformed size or stride in ", name));
      }
      sizes.push_back(size.integer);
      strides.push_back(stride.integer);
      if (size.integer == 0) empty = true;
      if (size.integer > 0) last += (size.integer - 1) * stride.integer;
    }
    if (offset < 0 || (!empty && last >= storage.numel())) {
      return Error(absl::StrCat("tensor view (offset ", offset, ", sizes [",
                                absl::StrJoin(sizes, ", "), "]) exceeds its ",
                                storage.numel(), "-element storage"));
    }
    *result = NewValue(Kind::kTensor);
    (*result)->tensor =
        storage.as_strided(sizes, strides, storage.storage_offset() + offset);
    return absl::OkStatus();
  }

  // nn.Parameter(tensor, requires_grad[, hooks, state]): the tensor.
  if (name == "torch._utils._rebuild_parameter" ||
      name == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || a[0]->kind != Kind::kTensor) {
      return Error(absl::StrCat("malformed arguments of ", name));
    }
    *result = a[0];
    return absl::OkStatus();
  }

  // Anything else is never executed: it becomes an opaque object, an error
  // only if the state_dict needs it as a tensor.
  *result = NewText(Kind::kObject, name);
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Containers.
// ---------------------------------------------------------------------------

// Persistent ids name storages: ("storage", storage_type, key, location,
// numel) in zip files, with a sixth element view_metadata in legacy files.
struct StorageId {
  torch::Dtype dtype;
  std::string key;
  int64_t numel;
  const Value* view = nullptr;  // legacy (view_key, offset, size), or null
};

absl::StatusOr<StorageId> ParseStorageId(const Value& pid, size_t arity) {
  if (pid.kind != Kind::kTuple || pid.items.empty() ||
      !IsString(*pid.items[0])) {
    return absl::InvalidArgumentError(
        absl::StrCat("persistent id is ", Describe(pid),
                     ", not a (\"storage\", ...) tuple"));
  }
  if (pid.items[0]->text == "module") {
    return absl::InvalidArgumentError(
        "the file holds a pickled nn.Module, not a state_dict: save "
        "model.state_dict() instead");
  }
  if (pid.items[0]->text != "storage" || pid.items.size() != arity) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported persistent id \"", pid.items[0]->text,
                     "\" with ", pid.items.size(), " elements"));
  }
  const Value& type = *pid.items[1];
  std::optional<torch::Dtype> dtype;
  if (type.kind == Kind::kGlobal) dtype = StorageDtype(type.text);
  if (!dtype) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported storage type: ", Describe(type)));
  }
  if (!IsString(*pid.items[2]) || pid.items[4]->kind != Kind::kInt ||
      pid.items[4]->integer < 0) {
    return absl::InvalidArgumentError("malformed storage id");
  }
  StorageId id{*dtype, pid.items[2]->text, pid.items[4]->integer};
  if (arity == 6 && pid.items[5]->kind != Kind::kNone) {
    id.view = pid.items[5].get();
  }
  return id;
}

absl::Status CheckLittleEndianHost() {
  const uint16_t probe = 1;
  uint8_t first;
  std::memcpy(&first, &probe, 1);
  if (first != 1) {
    return absl::UnimplementedError(
        "reading torch.save files needs a little-endian host");
  }
  return absl::OkStatus();
}

// The state_dict inside the unpickled root object.
absl::StatusOr<StateDict> ExtractStateDict(const Value& root,
                                           const std::string& path) {
  const Value* dict = &root;
  if (root.kind == Kind::kDict) {
    // A training checkpoint: {"epoch": ..., "state_dict": {...}, ...}.
    const Value* nested = DictGet(root, "state_dict");
    if (nested != nullptr && nested->kind == Kind::kDict) dict = nested;
  }
  if (dict->kind != Kind::kDict) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " holds ", Describe(*dict),
        ", not a state_dict (a dict of tensors): save model.state_dict()"));
  }
  StateDict state;
  state.reserve(dict->entries.size());
  for (const auto& [key, item] : dict->entries) {
    if (!IsString(*key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": state_dict key is ", Describe(*key), ", not a string"));
    }
    if (item->kind != Kind::kTensor) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": state_dict entry \"", key->text, "\" is ",
                       Describe(*item), ", not a tensor"));
    }
    state.emplace_back(key->text, item->tensor);
  }
  return state;
}

std::string WithoutBacktrace(const std::exception& e) {
  if (const auto* error = dynamic_cast<const c10::Error*>(&e)) {
    return error->what_without_backtrace();
  }
  return e.what();
}

absl::StatusOr<StateDict> ReadZipFile(const std::string& path) {
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (reader.hasRecord("byteorder")) {
      auto [data, size] = reader.getRecord("byteorder");
      const std::string order(static_cast<const char*>(data.get()), size);
      if (order != "little") {
        return absl::UnimplementedError(absl::StrCat(
            path, ": byte order \"", order, "\" is not supported"));
      }
    }
    if (!reader.hasRecord("data.pkl")) {
      return absl::InvalidArgumentError(absl::StrCat(
          path,
          " is a zip archive without data.pkl: not a torch.save file "
          "(a TorchScript archive? load it with torch::jit::load)"));
    }
    auto [pickle, pickle_size] = reader.getRecord("data.pkl");

    std::map<std::string, ValuePtr> storages;
    PersistentLoader loader =
        [&](const Value& pid) -> absl::StatusOr<ValuePtr> {
      absl::StatusOr<StorageId> id = ParseStorageId(pid, 5);
      if (!id.ok()) return id.status();
      auto it = storages.find(id->key);
      if (it != storages.end()) return it->second;
      const std::string record = "data/" + id->key;
      if (!reader.hasRecord(record)) {
        return absl::DataLossError(
            absl::StrCat("storage record ", record, " is missing"));
      }
      auto [data, size] = reader.getRecord(record);
      const int64_t element_size = c10::elementSize(id->dtype);
      if (static_cast<int64_t>(size) != id->numel * element_size) {
        return absl::DataLossError(
            absl::StrCat("storage record ", record, " has ", size,
                         " bytes, expected ", id->numel, " x ", element_size));
      }
      ValuePtr storage = NewValue(Kind::kStorage);
      // The tensor adopts the record's buffer: no copy.
      auto owner = std::make_shared<at::DataPtr>(std::move(data));
      storage->tensor = torch::from_blob(
          owner->get(), {id->numel}, [owner](void*) {},
          torch::TensorOptions().dtype(id->dtype));
      storages.emplace(id->key, storage);
      return storage;
    };
    Unpickler unpickler(static_cast<const char*>(pickle.get()), pickle_size, 0,
                        path + " (data.pkl)", loader);
    absl::StatusOr<ValuePtr> root = unpickler.Load();
    if (!root.ok()) return root.status();
    return ExtractStateDict(**root, path);
  } catch (const std::exception& e) {
    return absl::DataLossError(
        absl::StrCat(path,
                     ": cannot read the torch.save zip archive (truncated or "
                     "corrupt?): ",
                     WithoutBacktrace(e)));
  }
}

// The legacy format: five pickles, then per storage (in the order of the
// fifth pickle's key list) an int64 element count and the raw elements.
absl::StatusOr<StateDict> ReadLegacyFile(const std::string& path,
                                         const std::string& bytes) {
  // torch.serialization.MAGIC_NUMBER, 0x1950a86a20f9469cfc6c, little-endian.
  static const std::string kMagic("\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19",
                                  10);
  constexpr int64_t kProtocolVersion = 1001;
  const std::string where = path + " (legacy torch.save format)";
  PersistentLoader no_storages = [](const Value&) -> absl::StatusOr<ValuePtr> {
    return absl::InvalidArgumentError("unexpected persistent id in a header");
  };
  size_t pos = 0;
  auto load_header = [&]() -> absl::StatusOr<ValuePtr> {
    Unpickler unpickler(bytes.data(), bytes.size(), pos, where, no_storages);
    absl::StatusOr<ValuePtr> value = unpickler.Load();
    if (value.ok()) pos = unpickler.position();
    return value;
  };

  absl::StatusOr<ValuePtr> magic = load_header();
  if (!magic.ok()) return magic.status();
  if ((*magic)->kind != Kind::kBigInt || (*magic)->text != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a torch.save file (wrong magic number)"));
  }
  absl::StatusOr<ValuePtr> protocol = load_header();
  if (!protocol.ok()) return protocol.status();
  if ((*protocol)->kind != Kind::kInt ||
      (*protocol)->integer != kProtocolVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": unsupported protocol version ", Describe(**protocol)));
  }
  absl::StatusOr<ValuePtr> sys_info = load_header();
  if (!sys_info.ok()) return sys_info.status();
  if ((*sys_info)->kind == Kind::kDict) {
    const Value* little_endian = DictGet(**sys_info, "little_endian");
    if (little_endian != nullptr && little_endian->kind == Kind::kBool &&
        little_endian->integer == 0) {
      return absl::UnimplementedError(
          absl::StrCat(where, ": big-endian files are not supported"));
    }
  }

  std::map<std::string, ValuePtr> storages;  // root storages and views
  PersistentLoader loader = [&](const Value& pid) -> absl::StatusOr<ValuePtr> {
    absl::StatusOr<StorageId> id = ParseStorageId(pid, 6);
    if (!id.ok()) return id.status();
    auto root = storages.find(id->key);
    if (root == storages.end()) {
      ValuePtr storage = NewValue(Kind::kStorage);
      storage->tensor = torch::empty({id->numel}, id->dtype);
      root = storages.emplace(id->key, storage).first;
    }
    if (id->view == nullptr) return root->second;
    const Value& view = *id->view;
    if (view.kind != Kind::kTuple || view.items.size() != 3 ||
        !IsString(*view.items[0]) || view.items[1]->kind != Kind::kInt ||
        view.items[2]->kind != Kind::kInt) {
      return absl::InvalidArgumentError("malformed storage view metadata");
    }
    const std::string& view_key = view.items[0]->text;
    auto existing = storages.find(view_key);
    if (existing != storages.end()) return existing->second;
    const int64_t offset = view.items[1]->integer;
    const int64_t size = view.items[2]->integer;
    const torch::Tensor& whole = root->second->tensor;
    if (offset < 0 || size < 0 || offset + size > whole.numel()) {
      return absl::InvalidArgumentError("storage view exceeds its storage");
    }
    ValuePtr storage = NewValue(Kind::kStorage);
    storage->tensor = whole.narrow(0, offset, size);
    storages.emplace(view_key, storage);
    return storage;
  };
  Unpickler unpickler(bytes.data(), bytes.size(), pos, where, loader);
  absl::StatusOr<ValuePtr> root = unpickler.Load();
  if (!root.ok()) return root.status();
  pos = unpickler.position();

  absl::StatusOr<ValuePtr> keys = load_header();
  if (!keys.ok()) return keys.status();
  if ((*keys)->kind != Kind::kList) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": storage key list is ", Describe(**keys)));
  }
  for (const ValuePtr& key : (*keys)->items) {
    auto it = IsString(*key) ? storages.find(key->text) : storages.end();
    if (it == storages.end()) {
      return absl::DataLossError(
          absl::StrCat(where, ": storage list names an unknown storage"));
    }
    torch::Tensor& storage = it->second->tensor;
    int64_t count = 0;
    if (bytes.size() - pos < sizeof(count)) {
      return absl::DataLossError(absl::StrCat(where, ": truncated: storage \"",
                                              key->text, "\" at offset ", pos,
                                              " is missing"));
    }
    std::memcpy(&count, bytes.data() + pos, sizeof(count));
    pos += sizeof(count);
    const uint64_t nbytes =
        static_cast<uint64_t>(storage.numel()) * storage.element_size();
    if (count != storage.numel() || bytes.size() - pos < nbytes) {
      return absl::DataLossError(
          absl::StrCat(where, ": truncated or corrupt storage \"", key->text,
                       "\" at offset ", pos - sizeof(count), ": expected ",
                       storage.numel(), " elements, the file has ", count,
                       " and ", bytes.size() - pos, " bytes left"));
    }
    std::memcpy(storage.data_ptr(), bytes.data() + pos, nbytes);
    pos += nbytes;
  }
  return ExtractStateDict(**root, path);
}

}  // namespace

absl::StatusOr<StateDict> ReadStateDict(const std::string& path) {
  if (absl::Status status = CheckLittleEndianHost(); !status.ok()) {
    return status;
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::NotFoundError(absl::StrCat("cannot open weights file ", path));
  }
  char head[4] = {0, 0, 0, 0};
  file.read(head, sizeof(head));
  const std::streamsize head_size = file.gcount();
  if (head_size == 4 && std::memcmp(head, "PK\x03\x04", 4) == 0) {
    file.close();
    return ReadZipFile(path);
  }
  if (head_size >= 2 && static_cast<uint8_t>(head[0]) == 0x80) {
    file.seekg(0, std::ios::end);
    std::string contents(static_cast<size_t>(file.tellg()), '\0');
    file.seekg(0);
    if (!file.read(contents.data(), contents.size())) {
      return absl::DataLossError(absl::StrCat("cannot read ", path));
    }
    return ReadLegacyFile(path, contents);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      path, " is not a torch.save file (neither a zip archive nor a pickle)"));
}

}  // namespace chexnet
}  // namespace kolo
