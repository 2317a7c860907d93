// torch.save files without LibTorch: a closed pickle interpreter over an
// arena of values, and the zip and legacy layouts. See torch_pickle.h.
#include "examples/chexnet/models/torch_pickle.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace kolo {
namespace chexnet {
namespace {

// Longest "module.name" a GLOBAL or STACK_GLOBAL may name; real ones are
// under 100 bytes, and STACK_GLOBAL would otherwise copy memoized strings of
// any size again and again.
constexpr size_t kMaxGlobalName = 1024;
// Most dimensions of a tensor (PyTorch's own limit is lower).
constexpr size_t kMaxDims = 64;
// Longest piece of file text quoted in an error message.
constexpr size_t kMaxQuoted = 100;

// ---------------------------------------------------------------------------
// Python values as far as state_dict files need them.
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
  kStorage,  // integer indexes Arena::slices
  kTensor,   // integer indexes Arena::tensors
};

// Values refer to each other by index and never own each other, so the
// arena frees any graph (deep, shared or cyclic, as the pickle memo allows)
// in one loop. Containers have reference semantics, as in Python: the memo
// and SETITEMS/APPENDS mutate objects that are also referenced elsewhere.
using ValueId = uint32_t;

// Where a dict's keys are, so that assignment is not a linear scan.
struct DictIndex {
  absl::flat_hash_map<std::string, size_t> strings;  // str and bytes keys
  absl::flat_hash_map<int64_t, size_t> ints;
};

struct Value {
  explicit Value(Kind k) : kind(k) {}
  Kind kind;
  size_t depth = 0;     // containers: 1 + the deepest item, as far as built
  int64_t integer = 0;  // kBool, kInt; the index of kStorage and kTensor
  double real = 0;      // kFloat
  std::string text;     // kString, kBytes, kBigInt, kGlobal, kObject
  std::vector<ValueId> items;                        // kTuple, kList
  std::vector<std::pair<ValueId, ValueId>> entries;  // kDict, in order
  std::unique_ptr<DictIndex> index;                  // kDict
};

// A storage as the pickle refers to it: elements [base, base + length) of
// the storage numbered `storage` (legacy files may name a part of one).
struct StorageSlice {
  size_t storage = 0;
  int64_t base = 0;
  int64_t length = 0;
};

// A tensor: TensorRecord without its name.
struct TensorView {
  size_t storage = 0;
  int64_t offset = 0;
  std::vector<int64_t> sizes;
  std::vector<int64_t> strides;
};

// Everything one pickle creates. A deque keeps references to values valid
// while it grows.
struct Arena {
  std::deque<Value> values;
  std::vector<StorageSlice> slices;
  std::vector<TensorView> tensors;
  size_t elements = 0;  // items and entries ever placed in containers

  const Value& operator[](ValueId id) const { return values[id]; }
  Value& operator[](ValueId id) { return values[id]; }
};

// File text for error messages, cut short.
std::string Quote(absl::string_view text) {
  if (text.size() <= kMaxQuoted) return absl::StrCat("\"", text, "\"");
  return absl::StrCat("\"", text.substr(0, kMaxQuoted), "...\" (", text.size(),
                      " bytes)");
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

// The entry of a string key, or null.
const std::pair<ValueId, ValueId>* DictFind(const Value& dict,
                                            const std::string& key) {
  if (dict.index == nullptr) return nullptr;
  auto it = dict.index->strings.find(key);
  return it == dict.index->strings.end() ? nullptr : &dict.entries[it->second];
}

// The storage classes torch.save names (torch.FloatStorage, ... and the
// untyped storage of newer releases, whose element count is in bytes).
std::optional<StorageType> StorageTypeOf(const std::string& global) {
  static const auto* const kTypes =
      new absl::flat_hash_map<std::string, StorageType>{
          {"FloatStorage", StorageType::kFloat32},
          {"DoubleStorage", StorageType::kFloat64},
          {"HalfStorage", StorageType::kFloat16},
          {"BFloat16Storage", StorageType::kBFloat16},
          {"LongStorage", StorageType::kInt64},
          {"IntStorage", StorageType::kInt32},
          {"ShortStorage", StorageType::kInt16},
          {"CharStorage", StorageType::kInt8},
          {"ByteStorage", StorageType::kUInt8},
          {"BoolStorage", StorageType::kBool},
          {"UntypedStorage", StorageType::kUInt8},
          {"_UntypedStorage", StorageType::kUInt8},
      };
  for (const char* module : {"torch.", "torch.storage.", "torch.cuda."}) {
    if (global.rfind(module, 0) == 0) {
      auto it = kTypes->find(global.substr(std::strlen(module)));
      if (it != kTypes->end()) return it->second;
    }
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// The pickle interpreter.
// ---------------------------------------------------------------------------

// The pickle opcodes of protocols 0 to 5, as Python's pickle module names
// them. Unpickler::Step's switch names every one (-Wswitch checks it): those
// torch.save never writes (the text forms of protocol 0, the extension
// registry, sets, out-of-band buffers) are refused, as are bytes that are no
// opcode.
enum class Op : uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicode = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  // Protocol 2.
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  // Protocol 3.
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  // Protocol 4.
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  // Protocol 5.
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadonlyBuffer = 0x98,
};

const char* OpcodeName(Op op) {
  switch (op) {
    case Op::kMark:
      return "MARK";
    case Op::kStop:
      return "STOP";
    case Op::kPop:
      return "POP";
    case Op::kPopMark:
      return "POP_MARK";
    case Op::kDup:
      return "DUP";
    case Op::kFloat:
      return "FLOAT";
    case Op::kInt:
      return "INT";
    case Op::kBinInt:
      return "BININT";
    case Op::kBinInt1:
      return "BININT1";
    case Op::kLong:
      return "LONG";
    case Op::kBinInt2:
      return "BININT2";
    case Op::kNone:
      return "NONE";
    case Op::kPersId:
      return "PERSID";
    case Op::kBinPersId:
      return "BINPERSID";
    case Op::kReduce:
      return "REDUCE";
    case Op::kString:
      return "STRING";
    case Op::kBinString:
      return "BINSTRING";
    case Op::kShortBinString:
      return "SHORT_BINSTRING";
    case Op::kUnicode:
      return "UNICODE";
    case Op::kBinUnicode:
      return "BINUNICODE";
    case Op::kAppend:
      return "APPEND";
    case Op::kBuild:
      return "BUILD";
    case Op::kGlobal:
      return "GLOBAL";
    case Op::kDict:
      return "DICT";
    case Op::kEmptyDict:
      return "EMPTY_DICT";
    case Op::kAppends:
      return "APPENDS";
    case Op::kGet:
      return "GET";
    case Op::kBinGet:
      return "BINGET";
    case Op::kInst:
      return "INST";
    case Op::kLongBinGet:
      return "LONG_BINGET";
    case Op::kList:
      return "LIST";
    case Op::kEmptyList:
      return "EMPTY_LIST";
    case Op::kObj:
      return "OBJ";
    case Op::kPut:
      return "PUT";
    case Op::kBinPut:
      return "BINPUT";
    case Op::kLongBinPut:
      return "LONG_BINPUT";
    case Op::kSetItem:
      return "SETITEM";
    case Op::kTuple:
      return "TUPLE";
    case Op::kEmptyTuple:
      return "EMPTY_TUPLE";
    case Op::kSetItems:
      return "SETITEMS";
    case Op::kBinFloat:
      return "BINFLOAT";
    case Op::kProto:
      return "PROTO";
    case Op::kNewObj:
      return "NEWOBJ";
    case Op::kExt1:
      return "EXT1";
    case Op::kExt2:
      return "EXT2";
    case Op::kExt4:
      return "EXT4";
    case Op::kTuple1:
      return "TUPLE1";
    case Op::kTuple2:
      return "TUPLE2";
    case Op::kTuple3:
      return "TUPLE3";
    case Op::kNewTrue:
      return "NEWTRUE";
    case Op::kNewFalse:
      return "NEWFALSE";
    case Op::kLong1:
      return "LONG1";
    case Op::kLong4:
      return "LONG4";
    case Op::kBinBytes:
      return "BINBYTES";
    case Op::kShortBinBytes:
      return "SHORT_BINBYTES";
    case Op::kShortBinUnicode:
      return "SHORT_BINUNICODE";
    case Op::kBinUnicode8:
      return "BINUNICODE8";
    case Op::kBinBytes8:
      return "BINBYTES8";
    case Op::kEmptySet:
      return "EMPTY_SET";
    case Op::kAddItems:
      return "ADDITEMS";
    case Op::kFrozenSet:
      return "FROZENSET";
    case Op::kNewObjEx:
      return "NEWOBJ_EX";
    case Op::kStackGlobal:
      return "STACK_GLOBAL";
    case Op::kMemoize:
      return "MEMOIZE";
    case Op::kFrame:
      return "FRAME";
    case Op::kByteArray8:
      return "BYTEARRAY8";
    case Op::kNextBuffer:
      return "NEXT_BUFFER";
    case Op::kReadonlyBuffer:
      return "READONLY_BUFFER";
  }
  return "unknown";
}

// Resolves the persistent id of BINPERSID (a tuple naming a storage); errors
// are reported with the opcode's offset by the caller.
using PersistentLoader =
    std::function<absl::StatusOr<StorageSlice>(const Arena&, const Value&)>;

// Interprets one pickle (up to and including STOP) that starts at `start` in
// `data`. Offsets in errors are relative to the start of `data`.
class Unpickler {
 public:
  Unpickler(absl::string_view data, size_t start, std::string where,
            const PickleLimits& limits, PersistentLoader persistent_loader)
      : data_(data),
        pos_(start),
        where_(std::move(where)),
        limits_(limits),
        persistent_loader_(std::move(persistent_loader)) {}

  // The root object.
  absl::StatusOr<ValueId> Load();

  // The values Load() created.
  const Arena& arena() const { return arena_; }
  // The offset just past STOP once Load() succeeded.
  size_t position() const { return pos_; }

 private:
  absl::Status Step(Op op, bool* stop);
  absl::Status Call(ValueId callable, ValueId args, ValueId* result);
  absl::Status RebuildTensor(const std::string& name,
                             const std::vector<ValueId>& args, ValueId* result);

  absl::Status Error(const std::string& what) const {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s (pickle opcode %s, 0x%02x, at offset %d)", where_, what,
        OpcodeName(static_cast<Op>(op_)), op_, op_offset_));
  }
  absl::Status Truncated() const {
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated pickle: opcode %s (0x%02x) at offset %d runs past the "
        "end of the data (%d bytes)",
        where_, OpcodeName(static_cast<Op>(op_)), op_, op_offset_,
        data_.size()));
  }
  absl::Status TooMany(const char* what, size_t limit) const {
    return Error(absl::StrCat("the file needs more than ", limit, " ", what,
                              ": not a state_dict this reader accepts"));
  }

  // A new value of `kind` in the arena.
  absl::Status New(Kind kind, ValueId* id) {
    if (arena_.values.size() >= limits_.max_objects) {
      return TooMany("objects", limits_.max_objects);
    }
    *id = static_cast<ValueId>(arena_.values.size());
    arena_.values.emplace_back(kind);
    if (kind == Kind::kDict) {
      arena_.values.back().index = std::make_unique<DictIndex>();
    }
    return absl::OkStatus();
  }
  absl::Status PushNew(Kind kind, Value** value) {
    ValueId id;
    if (auto s = New(kind, &id); !s.ok()) return s;
    *value = &arena_[id];
    return Push(id);
  }
  absl::Status PushText(Kind kind, std::string text) {
    Value* value;
    if (auto s = PushNew(kind, &value); !s.ok()) return s;
    value->text = std::move(text);
    return absl::OkStatus();
  }
  absl::Status PushInt(int64_t v) {
    Value* value;
    if (auto s = PushNew(Kind::kInt, &value); !s.ok()) return s;
    value->integer = v;
    return absl::OkStatus();
  }
  absl::Status PushGlobal(std::string module, const std::string& name) {
    if (module.size() + name.size() >= kMaxGlobalName) {
      return Error(absl::StrCat("class name ", Quote(module), ".", Quote(name),
                                " is longer than ", kMaxGlobalName, " bytes"));
    }
    absl::StrAppend(&module, ".", name);
    return PushText(Kind::kGlobal, std::move(module));
  }

  // Records that `container` now holds `item` (counted against the element
  // budget when `added`) and how deep that makes it.
  absl::Status Adopt(Value& container, ValueId item, bool added) {
    if (added && ++arena_.elements > limits_.max_elements) {
      return TooMany("container elements", limits_.max_elements);
    }
    const size_t depth = arena_[item].depth + 1;
    if (depth > limits_.max_depth) {
      return Error(absl::StrCat("objects are nested more than ",
                                limits_.max_depth, " levels deep"));
    }
    container.depth = std::max(container.depth, depth);
    return absl::OkStatus();
  }
  // Python dict assignment: replaces the value of an equal string or int
  // key; other keys (which a state_dict never has) are appended.
  absl::Status DictSet(Value& dict, ValueId key, ValueId item) {
    const Value& k = arena_[key];
    std::optional<size_t> existing;
    const size_t next = dict.entries.size();
    if (IsString(k)) {
      auto [it, inserted] = dict.index->strings.try_emplace(k.text, next);
      if (!inserted) existing = it->second;
    } else if (k.kind == Kind::kInt) {
      auto [it, inserted] = dict.index->ints.try_emplace(k.integer, next);
      if (!inserted) existing = it->second;
    }
    if (existing) {
      dict.entries[*existing].second = item;
      return Adopt(dict, item, /*added=*/false);
    }
    dict.entries.emplace_back(key, item);
    if (auto s = Adopt(dict, key, /*added=*/true); !s.ok()) return s;
    return Adopt(dict, item, /*added=*/false);
  }

  bool Read(size_t n, const char** bytes) {
    if (n > data_.size() - pos_) return false;
    *bytes = data_.data() + pos_;
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
    const size_t end = data_.find('\n', pos_);
    if (end == absl::string_view::npos) return false;
    line->assign(data_.data() + pos_, end - pos_);
    pos_ = end + 1;
    return true;
  }

  absl::Status Push(ValueId value) {
    if (stack_.size() >= limits_.max_stack) {
      return TooMany("stack entries", limits_.max_stack);
    }
    stack_.push_back(value);
    return absl::OkStatus();
  }
  absl::Status Pop(ValueId* value) {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    *value = stack_.back();
    stack_.pop_back();
    return absl::OkStatus();
  }
  absl::Status Top(ValueId* value) const {
    if (stack_.size() <= Floor()) return Error("stack underflow");
    *value = stack_.back();
    return absl::OkStatus();
  }
  // Everything above the innermost MARK, which is removed.
  absl::Status PopToMark(std::vector<ValueId>* items) {
    if (marks_.empty()) return Error("no MARK on the stack");
    const size_t mark = marks_.back();
    marks_.pop_back();
    items->assign(stack_.begin() + mark, stack_.end());
    stack_.resize(mark);
    return absl::OkStatus();
  }
  // Objects below the innermost MARK may not be popped by ordinary opcodes.
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  absl::Status Memoize(uint64_t index) {
    ValueId top = 0;
    if (auto s = Top(&top); !s.ok()) return s;
    if (memo_.size() >= limits_.max_stack && !memo_.contains(index)) {
      return TooMany("memo entries", limits_.max_stack);
    }
    memo_[index] = top;
    return absl::OkStatus();
  }

  absl::string_view data_;
  size_t pos_;
  std::string where_;
  PickleLimits limits_;
  PersistentLoader persistent_loader_;
  uint8_t op_ = 0;
  size_t op_offset_ = 0;
  Arena arena_;
  std::vector<ValueId> stack_;
  std::vector<size_t> marks_;
  absl::flat_hash_map<uint64_t, ValueId> memo_;
};

absl::StatusOr<ValueId> Unpickler::Load() {
  bool stop = false;
  while (!stop) {
    op_offset_ = pos_;
    op_ = 0;
    const char* byte;
    if (!Read(1, &byte)) {
      return absl::DataLossError(absl::StrFormat(
          "%s: truncated pickle: no STOP before the end of the data at offset "
          "%d",
          where_, data_.size()));
    }
    op_ = static_cast<uint8_t>(*byte);
    absl::Status status = Step(static_cast<Op>(op_), &stop);
    if (!status.ok()) return status;
  }
  if (stack_.size() != 1 || !marks_.empty()) {
    return Error(absl::StrCat("malformed pickle: ", stack_.size(),
                              " objects and ", marks_.size(),
                              " marks left at STOP"));
  }
  return stack_.back();
}

absl::Status Unpickler::Step(Op op, bool* stop) {
  uint64_t n = 0;
  const char* bytes = nullptr;
  Value* value = nullptr;
  ValueId id = 0;
  std::vector<ValueId> items;
  switch (op) {
    case Op::kProto: {
      if (!ReadUnsigned(1, &n)) return Truncated();
      if (n < 2 || n > 5) {
        return Error(absl::StrCat("unsupported pickle protocol ", n));
      }
      return absl::OkStatus();
    }
    case Op::kFrame:  // a length prefix only
      return ReadUnsigned(8, &n) ? absl::OkStatus() : Truncated();
    case Op::kStop:
      *stop = true;
      return absl::OkStatus();

    case Op::kGlobal: {  // "module\nname\n"
      std::string module, name;
      if (!ReadLine(&module) || !ReadLine(&name)) return Truncated();
      return PushGlobal(std::move(module), name);
    }
    case Op::kStackGlobal: {
      ValueId module, name;
      if (auto s = Pop(&name); !s.ok()) return s;
      if (auto s = Pop(&module); !s.ok()) return s;
      if (arena_[module].kind != Kind::kString ||
          arena_[name].kind != Kind::kString) {
        return Error(absl::StrCat(OpcodeName(op), " needs two strings"));
      }
      return PushGlobal(arena_[module].text, arena_[name].text);
    }
    case Op::kBinPersId: {
      if (auto s = Pop(&id); !s.ok()) return s;
      absl::StatusOr<StorageSlice> slice =
          persistent_loader_(arena_, arena_[id]);
      if (!slice.ok()) {
        return absl::Status(
            slice.status().code(),
            absl::StrFormat("%s: %s (persistent id at offset %d)", where_,
                            slice.status().message(), op_offset_));
      }
      if (auto s = PushNew(Kind::kStorage, &value); !s.ok()) return s;
      value->integer = static_cast<int64_t>(arena_.slices.size());
      arena_.slices.push_back(*slice);
      return absl::OkStatus();
    }

    case Op::kBinPut:
    case Op::kLongBinPut: {
      if (!ReadUnsigned(op == Op::kBinPut ? 1 : 4, &n)) return Truncated();
      return Memoize(n);
    }
    case Op::kMemoize:
      return Memoize(memo_.size());
    case Op::kBinGet:
    case Op::kLongBinGet: {
      if (!ReadUnsigned(op == Op::kBinGet ? 1 : 4, &n)) return Truncated();
      auto it = memo_.find(n);
      if (it == memo_.end()) {
        return Error(absl::StrCat("memo entry ", n, " was never stored"));
      }
      return Push(it->second);
    }

    case Op::kMark:
      if (marks_.size() >= limits_.max_stack) {
        return TooMany("marks", limits_.max_stack);
      }
      marks_.push_back(stack_.size());
      return absl::OkStatus();
    case Op::kPop:
      return Pop(&id);
    case Op::kPopMark:
      return PopToMark(&items);
    case Op::kDup: {
      if (auto s = Top(&id); !s.ok()) return s;
      return Push(id);
    }

    case Op::kNone:
      return PushNew(Kind::kNone, &value);
    case Op::kNewTrue:
    case Op::kNewFalse: {
      if (auto s = PushNew(Kind::kBool, &value); !s.ok()) return s;
      value->integer = op == Op::kNewTrue ? 1 : 0;
      return absl::OkStatus();
    }
    case Op::kBinInt: {  // 4-byte signed
      if (!ReadUnsigned(4, &n)) return Truncated();
      return PushInt(static_cast<int32_t>(static_cast<uint32_t>(n)));
    }
    case Op::kBinInt1:
    case Op::kBinInt2: {
      if (!ReadUnsigned(op == Op::kBinInt1 ? 1 : 2, &n)) return Truncated();
      return PushInt(static_cast<int64_t>(n));
    }
    case Op::kLong1:
    case Op::kLong4: {  // little-endian two's complement of n bytes
      if (!ReadUnsigned(op == Op::kLong1 ? 1 : 4, &n)) return Truncated();
      if (!Read(n, &bytes)) return Truncated();
      if (n > 8) return PushText(Kind::kBigInt, std::string(bytes, n));
      uint64_t bits = 0;
      for (uint64_t i = 0; i < n; ++i) {
        bits |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[i]))
                << (8 * i);
      }
      if (n > 0 && n < 8 && (static_cast<uint8_t>(bytes[n - 1]) & 0x80)) {
        bits |= ~uint64_t{0} << (8 * n);  // sign-extend
      }
      return PushInt(static_cast<int64_t>(bits));
    }
    case Op::kBinFloat: {  // big-endian IEEE double
      if (!Read(8, &bytes)) return Truncated();
      uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) {
        bits = (bits << 8) | static_cast<uint8_t>(bytes[i]);
      }
      if (auto s = PushNew(Kind::kFloat, &value); !s.ok()) return s;
      std::memcpy(&value->real, &bits, sizeof(bits));
      return absl::OkStatus();
    }

    // Python 2 str (BINSTRING) is read as text, as torch.load does.
    case Op::kBinUnicode:
    case Op::kShortBinUnicode:
    case Op::kBinUnicode8:
    case Op::kBinString:
    case Op::kShortBinString:
    case Op::kBinBytes:
    case Op::kShortBinBytes:
    case Op::kBinBytes8: {
      const bool one_byte_length = op == Op::kShortBinUnicode ||
                                   op == Op::kShortBinString ||
                                   op == Op::kShortBinBytes;
      const bool eight_byte_length =
          op == Op::kBinUnicode8 || op == Op::kBinBytes8;
      const size_t width = one_byte_length ? 1 : eight_byte_length ? 8 : 4;
      if (!ReadUnsigned(width, &n)) return Truncated();
      if (op == Op::kBinString && (n & 0x80000000u)) {
        return Error("negative length");
      }
      if (!Read(n, &bytes)) return Truncated();
      const bool is_bytes = op == Op::kBinBytes || op == Op::kShortBinBytes ||
                            op == Op::kBinBytes8;
      return PushText(is_bytes ? Kind::kBytes : Kind::kString,
                      std::string(bytes, n));
    }

    case Op::kEmptyTuple:
      return PushNew(Kind::kTuple, &value);
    case Op::kTuple1:
    case Op::kTuple2:
    case Op::kTuple3: {
      const size_t count = op == Op::kTuple1 ? 1 : op == Op::kTuple2 ? 2 : 3;
      if (stack_.size() < Floor() + count) return Error("stack underflow");
      items.assign(stack_.end() - count, stack_.end());
      stack_.resize(stack_.size() - count);
      if (auto s = PushNew(Kind::kTuple, &value); !s.ok()) return s;
      for (ValueId item : items) {
        if (auto s = Adopt(*value, item, /*added=*/true); !s.ok()) return s;
      }
      value->items = std::move(items);
      return absl::OkStatus();
    }
    case Op::kTuple:
    case Op::kList:
      if (auto s = PopToMark(&items); !s.ok()) return s;
      if (auto s =
              PushNew(op == Op::kTuple ? Kind::kTuple : Kind::kList, &value);
          !s.ok()) {
        return s;
      }
      for (ValueId item : items) {
        if (auto s = Adopt(*value, item, /*added=*/true); !s.ok()) return s;
      }
      value->items = std::move(items);
      return absl::OkStatus();
    case Op::kEmptyList:
      return PushNew(Kind::kList, &value);
    case Op::kEmptyDict:
      return PushNew(Kind::kDict, &value);
    case Op::kDict:
      if (auto s = PopToMark(&items); !s.ok()) return s;
      if (items.size() % 2 != 0) return Error("odd number of dict items");
      if (auto s = PushNew(Kind::kDict, &value); !s.ok()) return s;
      for (size_t i = 0; i < items.size(); i += 2) {
        if (auto s = DictSet(*value, items[i], items[i + 1]); !s.ok()) {
          return s;
        }
      }
      return absl::OkStatus();
    case Op::kSetItem: {
      ValueId key, item, dict;
      if (auto s = Pop(&item); !s.ok()) return s;
      if (auto s = Pop(&key); !s.ok()) return s;
      if (auto s = Top(&dict); !s.ok()) return s;
      if (arena_[dict].kind != Kind::kDict) {
        return Error(
            absl::StrCat(OpcodeName(op), " on ", Describe(arena_[dict])));
      }
      return DictSet(arena_[dict], key, item);
    }
    case Op::kSetItems: {
      ValueId dict;
      if (auto s = PopToMark(&items); !s.ok()) return s;
      if (auto s = Top(&dict); !s.ok()) return s;
      if (arena_[dict].kind != Kind::kDict) {
        return Error(
            absl::StrCat(OpcodeName(op), " on ", Describe(arena_[dict])));
      }
      if (items.size() % 2 != 0) return Error("odd number of dict items");
      for (size_t i = 0; i < items.size(); i += 2) {
        if (auto s = DictSet(arena_[dict], items[i], items[i + 1]); !s.ok()) {
          return s;
        }
      }
      return absl::OkStatus();
    }
    case Op::kAppend:
    case Op::kAppends: {
      if (op == Op::kAppend) {
        if (auto s = Pop(&id); !s.ok()) return s;
        items.push_back(id);
      } else if (auto s = PopToMark(&items); !s.ok()) {
        return s;
      }
      ValueId list;
      if (auto s = Top(&list); !s.ok()) return s;
      Value& target = arena_[list];
      if (target.kind != Kind::kList) {
        return Error(absl::StrCat(OpcodeName(op), " on ", Describe(target)));
      }
      for (ValueId item : items) {
        if (auto s = Adopt(target, item, /*added=*/true); !s.ok()) return s;
        target.items.push_back(item);
      }
      return absl::OkStatus();
    }

    case Op::kReduce:      // callable(*args)
    case Op::kNewObj:      // cls.__new__(cls, *args)
    case Op::kNewObjEx: {  // same with keyword arguments (ignored)
      ValueId callable, args, kwargs;
      if (op == Op::kNewObjEx) {
        if (auto s = Pop(&kwargs); !s.ok()) return s;
      }
      if (auto s = Pop(&args); !s.ok()) return s;
      if (auto s = Pop(&callable); !s.ok()) return s;
      if (auto s = Call(callable, args, &id); !s.ok()) return s;
      return Push(id);
    }
    case Op::kBuild: {  // obj.__setstate__(state)
      ValueId state, object;
      if (auto s = Pop(&state); !s.ok()) return s;
      if (auto s = Top(&object); !s.ok()) return s;
      // An OrderedDict's state is its attributes (state_dict's _metadata:
      // module versions, not needed to load tensors by name); instances of
      // unknown classes stay opaque.
      const Kind kind = arena_[object].kind;
      if (kind == Kind::kDict || kind == Kind::kObject) {
        return absl::OkStatus();
      }
      return Error(
          absl::StrCat(OpcodeName(op), " on ", Describe(arena_[object])));
    }

    // Never written by torch.save.
    case Op::kFloat:
    case Op::kInt:
    case Op::kLong:
    case Op::kString:
    case Op::kUnicode:
    case Op::kPersId:
    case Op::kGet:
    case Op::kPut:
    case Op::kInst:
    case Op::kObj:
    case Op::kExt1:
    case Op::kExt2:
    case Op::kExt4:
    case Op::kEmptySet:
    case Op::kAddItems:
    case Op::kFrozenSet:
    case Op::kByteArray8:
    case Op::kNextBuffer:
    case Op::kReadonlyBuffer:
      break;
  }
  return Error("unsupported opcode");
}

absl::Status Unpickler::Call(ValueId callable_id, ValueId args_id,
                             ValueId* result) {
  const Value& callable = arena_[callable_id];
  const Value& args = arena_[args_id];
  if (callable.kind != Kind::kGlobal) {
    return Error(absl::StrCat("cannot call ", Describe(callable)));
  }
  if (args.kind != Kind::kTuple) {
    return Error(absl::StrCat("arguments of ", callable.text, " are ",
                              Describe(args), ", not a tuple"));
  }
  const std::string& name = callable.text;
  const std::vector<ValueId>& a = args.items;

  if (name == "collections.OrderedDict" || name == "builtins.dict" ||
      name == "__builtin__.dict") {
    if (auto s = New(Kind::kDict, result); !s.ok()) return s;
    Value& dict = arena_[*result];
    if (a.empty()) return absl::OkStatus();
    // OrderedDict(pairs): Python 2 pickles OrderedDicts this way.
    if (a.size() != 1) {
      return Error(absl::StrCat(name, " with ", a.size(), " arguments"));
    }
    const Value& from = arena_[a[0]];
    if (from.kind == Kind::kDict) {
      for (size_t i = 0; i < from.entries.size(); ++i) {
        const auto [key, item] = from.entries[i];
        if (auto s = DictSet(dict, key, item); !s.ok()) return s;
      }
      return absl::OkStatus();
    }
    if (!IsSequence(from)) {
      return Error(absl::StrCat(name, " of ", Describe(from)));
    }
    for (size_t i = 0; i < from.items.size(); ++i) {
      const Value& pair = arena_[from.items[i]];
      if (!IsSequence(pair) || pair.items.size() != 2) {
        return Error(absl::StrCat(name, " item is not a (key, value) pair"));
      }
      if (auto s = DictSet(dict, pair.items[0], pair.items[1]); !s.ok()) {
        return s;
      }
    }
    return absl::OkStatus();
  }

  if (name == "torch._utils._rebuild_tensor_v2" ||
      name == "torch._utils._rebuild_tensor") {
    return RebuildTensor(name, a, result);
  }

  // nn.Parameter(tensor, requires_grad[, hooks, state]): the tensor.
  if (name == "torch._utils._rebuild_parameter" ||
      name == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty() || arena_[a[0]].kind != Kind::kTensor) {
      return Error(absl::StrCat("malformed arguments of ", name));
    }
    *result = a[0];
    return absl::OkStatus();
  }

  // Anything else is never executed: it becomes an opaque object, an error
  // only if the state_dict needs it as a tensor.
  if (auto s = New(Kind::kObject, result); !s.ok()) return s;
  arena_[*result].text = name;
  return absl::OkStatus();
}

// _rebuild_tensor(storage, storage_offset, size, stride) and
// _rebuild_tensor_v2(..., requires_grad, backward_hooks[, metadata]): a view
// that must lie within its storage, computed without overflow.
absl::Status Unpickler::RebuildTensor(const std::string& name,
                                      const std::vector<ValueId>& a,
                                      ValueId* result) {
  if (a.size() < 4 || arena_[a[0]].kind != Kind::kStorage ||
      arena_[a[1]].kind != Kind::kInt || !IsSequence(arena_[a[2]]) ||
      !IsSequence(arena_[a[3]]) ||
      arena_[a[2]].items.size() != arena_[a[3]].items.size()) {
    return Error(absl::StrCat("malformed arguments of ", name));
  }
  const StorageSlice& slice = arena_.slices[arena_[a[0]].integer];
  const int64_t offset = arena_[a[1]].integer;
  const std::vector<ValueId>& size_items = arena_[a[2]].items;
  const std::vector<ValueId>& stride_items = arena_[a[3]].items;
  if (size_items.size() > kMaxDims) {
    return Error(absl::StrCat(name, " with ", size_items.size(),
                              " dimensions (at most ", kMaxDims, ")"));
  }
  TensorView view;
  view.storage = slice.storage;
  int64_t last = offset;  // the largest element index the view touches
  int64_t numel = 1;
  bool overflow = false;
  for (size_t i = 0; i < size_items.size(); ++i) {
    const Value& size = arena_[size_items[i]];
    const Value& stride = arena_[stride_items[i]];
    if (size.kind != Kind::kInt || stride.kind != Kind::kInt ||
        size.integer < 0 || stride.integer < 0) {
      return Error(absl::StrCat("malformed size or stride in ", name));
    }
    view.sizes.push_back(size.integer);
    view.strides.push_back(stride.integer);
    int64_t reach = 0;
    if (size.integer > 0) {
      overflow |=
          __builtin_mul_overflow(size.integer - 1, stride.integer, &reach) ||
          __builtin_add_overflow(last, reach, &last);
    }
    overflow |= __builtin_mul_overflow(numel, size.integer, &numel);
  }
  const bool empty = numel == 0 && !overflow;
  if (offset < 0 || overflow || (empty && offset > slice.length) ||
      (!empty && last >= slice.length)) {
    return Error(absl::StrCat("tensor view (offset ", offset, ", sizes [",
                              absl::StrJoin(view.sizes, ", "), "], strides [",
                              absl::StrJoin(view.strides, ", "),
                              "]) exceeds its ", slice.length,
                              "-element storage"));
  }
  view.offset = slice.base + offset;
  if (auto s = New(Kind::kTensor, result); !s.ok()) return s;
  arena_[*result].integer = static_cast<int64_t>(arena_.tensors.size());
  arena_.tensors.push_back(std::move(view));
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Containers.
// ---------------------------------------------------------------------------

// Persistent ids name storages: ("storage", storage_type, key, location,
// numel) in zip files, with a sixth element view_metadata in legacy files.
struct StorageId {
  StorageType type;
  std::string key;
  int64_t numel;
  std::optional<ValueId> view;  // legacy (view_key, offset, size)
};

absl::StatusOr<StorageId> ParseStorageId(const Arena& arena, const Value& pid,
                                         size_t arity) {
  if (pid.kind != Kind::kTuple || pid.items.empty() ||
      !IsString(arena[pid.items[0]])) {
    return absl::InvalidArgumentError(
        absl::StrCat("persistent id is ", Describe(pid),
                     ", not a (\"storage\", ...) tuple"));
  }
  const std::string& tag = arena[pid.items[0]].text;
  if (tag == "module") {
    return absl::InvalidArgumentError(
        "the file holds a pickled nn.Module, not a state_dict: save "
        "model.state_dict() instead");
  }
  if (tag != "storage" || pid.items.size() != arity) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported persistent id ", Quote(tag), " with ",
                     pid.items.size(), " elements"));
  }
  const Value& type = arena[pid.items[1]];
  std::optional<StorageType> storage_type;
  if (type.kind == Kind::kGlobal) storage_type = StorageTypeOf(type.text);
  if (!storage_type) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported storage type: ", Describe(type)));
  }
  const Value& key = arena[pid.items[2]];
  const Value& numel = arena[pid.items[4]];
  if (!IsString(key) || numel.kind != Kind::kInt || numel.integer < 0) {
    return absl::InvalidArgumentError("malformed storage id");
  }
  if (numel.integer >
      std::numeric_limits<int64_t>::max() / ElementSize(*storage_type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("storage ", Quote(key.text), " of ", numel.integer,
                     " elements is larger than any file"));
  }
  StorageId id{*storage_type, key.text, numel.integer, std::nullopt};
  if (arity == 6 && arena[pid.items[5]].kind != Kind::kNone) {
    id.view = pid.items[5];
  }
  return id;
}

// The state_dict inside the unpickled root object, its tensors renumbered to
// the storages they use (a training checkpoint's optimizer state is left
// out). `all_storages` is indexed by StorageSlice::storage.
absl::StatusOr<StateDictLayout> ExtractStateDict(
    const Arena& arena, ValueId root, const std::string& path,
    const std::vector<StorageRecord>& all_storages) {
  const Value* dict = &arena[root];
  if (dict->kind == Kind::kDict) {
    // A training checkpoint: {"epoch": ..., "state_dict": {...}, ...}.
    const auto* nested = DictFind(*dict, "state_dict");
    if (nested != nullptr && arena[nested->second].kind == Kind::kDict) {
      dict = &arena[nested->second];
    }
  }
  if (dict->kind != Kind::kDict) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, " holds ", Describe(*dict),
        ", not a state_dict (a dict of tensors): save model.state_dict()"));
  }
  StateDictLayout layout;
  absl::flat_hash_map<size_t, size_t> renumbered;
  layout.tensors.reserve(dict->entries.size());
  for (const auto& [key_id, item_id] : dict->entries) {
    const Value& key = arena[key_id];
    const Value& item = arena[item_id];
    if (!IsString(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ": state_dict key is ", Describe(key), ", not a string"));
    }
    if (item.kind != Kind::kTensor) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": state_dict entry ", Quote(key.text), " is ",
                       Describe(item), ", not a tensor"));
    }
    const TensorView& view = arena.tensors[item.integer];
    auto [it, inserted] =
        renumbered.try_emplace(view.storage, layout.storages.size());
    if (inserted) layout.storages.push_back(all_storages[view.storage]);
    layout.tensors.push_back(TensorRecord{key.text, it->second, view.offset,
                                          view.sizes, view.strides});
  }
  return layout;
}

// Reads the little-endian int64 at `pos` of `bytes`.
int64_t ReadInt64(absl::string_view bytes, size_t pos) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) {
    v |= static_cast<uint64_t>(static_cast<uint8_t>(bytes[pos + i])) << (8 * i);
  }
  return static_cast<int64_t>(v);
}

}  // namespace

int64_t ElementSize(StorageType type) {
  switch (type) {
    case StorageType::kFloat64:
    case StorageType::kInt64:
      return 8;
    case StorageType::kFloat32:
    case StorageType::kInt32:
      return 4;
    case StorageType::kFloat16:
    case StorageType::kBFloat16:
    case StorageType::kInt16:
      return 2;
    case StorageType::kInt8:
    case StorageType::kUInt8:
    case StorageType::kBool:
      return 1;
  }
  return 1;
}

absl::StatusOr<StateDictLayout> ParseZipPickle(absl::string_view pickle,
                                               const std::string& path,
                                               const PickleLimits& limits) {
  std::vector<StorageRecord> storages;
  absl::flat_hash_map<std::string, size_t> storage_of_key;
  PersistentLoader loader =
      [&](const Arena& arena,
          const Value& pid) -> absl::StatusOr<StorageSlice> {
    absl::StatusOr<StorageId> id = ParseStorageId(arena, pid, 5);
    if (!id.ok()) return id.status();
    // A key seen before names the same storage, as in torch.load.
    auto [it, inserted] = storage_of_key.try_emplace(id->key, storages.size());
    if (inserted) storages.push_back({id->key, id->type, id->numel, 0});
    return StorageSlice{it->second, 0, storages[it->second].numel};
  };
  Unpickler unpickler(pickle, 0, path + " (data.pkl)", limits, loader);
  absl::StatusOr<ValueId> root = unpickler.Load();
  if (!root.ok()) return root.status();
  return ExtractStateDict(unpickler.arena(), *root, path, storages);
}

absl::StatusOr<StateDictLayout> ParseLegacyFile(absl::string_view file,
                                                const std::string& path,
                                                const PickleLimits& limits) {
  // torch.serialization.MAGIC_NUMBER, 0x1950a86a20f9469cfc6c, little-endian.
  static constexpr absl::string_view kMagic(
      "\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19", 10);
  constexpr int64_t kProtocolVersion = 1001;
  const std::string where = path + " (legacy torch.save format)";
  PersistentLoader no_storages =
      [](const Arena&, const Value&) -> absl::StatusOr<StorageSlice> {
    return absl::InvalidArgumentError("unexpected persistent id in a header");
  };
  size_t pos = 0;

  {
    Unpickler magic(file, pos, where, limits, no_storages);
    absl::StatusOr<ValueId> value = magic.Load();
    if (!value.ok()) return value.status();
    const Value& number = magic.arena()[*value];
    if (number.kind != Kind::kBigInt || number.text != kMagic) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, " is not a torch.save file (wrong magic number)"));
    }
    pos = magic.position();
  }
  {
    Unpickler protocol(file, pos, where, limits, no_storages);
    absl::StatusOr<ValueId> value = protocol.Load();
    if (!value.ok()) return value.status();
    const Value& version = protocol.arena()[*value];
    if (version.kind != Kind::kInt || version.integer != kProtocolVersion) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unsupported protocol version ", Describe(version)));
    }
    pos = protocol.position();
  }
  {
    Unpickler sys_info(file, pos, where, limits, no_storages);
    absl::StatusOr<ValueId> value = sys_info.Load();
    if (!value.ok()) return value.status();
    const Value& info = sys_info.arena()[*value];
    if (info.kind == Kind::kDict) {
      const auto* little_endian = DictFind(info, "little_endian");
      if (little_endian != nullptr) {
        const Value& flag = sys_info.arena()[little_endian->second];
        if (flag.kind == Kind::kBool && flag.integer == 0) {
          return absl::UnimplementedError(
              absl::StrCat(where, ": big-endian files are not supported"));
        }
      }
    }
    pos = sys_info.position();
  }

  // Root storages by key, and legacy views (parts of a root storage) by
  // their own key.
  std::vector<StorageRecord> roots;
  absl::flat_hash_map<std::string, size_t> root_of_key;
  absl::flat_hash_map<std::string, StorageSlice> views;
  PersistentLoader loader =
      [&](const Arena& arena,
          const Value& pid) -> absl::StatusOr<StorageSlice> {
    absl::StatusOr<StorageId> id = ParseStorageId(arena, pid, 6);
    if (!id.ok()) return id.status();
    auto [root, inserted] = root_of_key.try_emplace(id->key, roots.size());
    if (inserted) roots.push_back({id->key, id->type, id->numel, 0});
    const int64_t root_numel = roots[root->second].numel;
    if (!id->view) return StorageSlice{root->second, 0, root_numel};
    const Value& view = arena[*id->view];
    if (view.kind != Kind::kTuple || view.items.size() != 3 ||
        !IsString(arena[view.items[0]]) ||
        arena[view.items[1]].kind != Kind::kInt ||
        arena[view.items[2]].kind != Kind::kInt) {
      return absl::InvalidArgumentError("malformed storage view metadata");
    }
    const std::string& view_key = arena[view.items[0]].text;
    auto existing = views.find(view_key);
    if (existing != views.end()) return existing->second;
    const int64_t offset = arena[view.items[1]].integer;
    const int64_t size = arena[view.items[2]].integer;
    if (offset < 0 || size < 0 || offset > root_numel - size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "storage view ", Quote(view_key), " (offset ", offset, ", size ",
          size, ") exceeds its ", root_numel, "-element storage"));
    }
    const StorageSlice slice{root->second, offset, size};
    views.emplace(view_key, slice);
    return slice;
  };
  Unpickler object(file, pos, where, limits, loader);
  absl::StatusOr<ValueId> root = object.Load();
  if (!root.ok()) return root.status();
  pos = object.position();

  // The storage keys, in the order their elements follow.
  Unpickler key_list(file, pos, where, limits, no_storages);
  absl::StatusOr<ValueId> keys = key_list.Load();
  if (!keys.ok()) return keys.status();
  pos = key_list.position();
  const Value& list = key_list.arena()[*keys];
  if (list.kind != Kind::kList) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": storage key list is ", Describe(list)));
  }
  std::vector<bool> has_data(roots.size(), false);
  for (ValueId key_id : list.items) {
    const Value& key = key_list.arena()[key_id];
    auto it = IsString(key) ? root_of_key.find(key.text) : root_of_key.end();
    if (it == root_of_key.end()) {
      return absl::DataLossError(
          absl::StrCat(where, ": the storage list names ",
                       IsString(key) ? Quote(key.text) : Describe(key),
                       ", which the pickle never refers to"));
    }
    if (has_data[it->second]) {
      return absl::DataLossError(absl::StrCat(
          where, ": the storage list names ", Quote(key.text), " twice"));
    }
    has_data[it->second] = true;
    StorageRecord& storage = roots[it->second];
    if (file.size() - pos < sizeof(int64_t)) {
      return absl::DataLossError(absl::StrCat(where, ": truncated: storage ",
                                              Quote(key.text), " at offset ",
                                              pos, " is missing"));
    }
    const int64_t count = ReadInt64(file, pos);
    pos += sizeof(int64_t);
    const int64_t element_size = ElementSize(storage.type);
    const uint64_t left = file.size() - pos;
    if (count != storage.numel ||
        static_cast<uint64_t>(storage.numel) > left / element_size) {
      return absl::DataLossError(absl::StrCat(
          where, ": truncated or corrupt storage ", Quote(key.text),
          " at offset ", pos - sizeof(int64_t), ": expected ", storage.numel,
          " elements of ", element_size, " bytes, the file has ", count,
          " and ", left, " bytes left"));
    }
    storage.file_offset = pos;
    pos += static_cast<uint64_t>(storage.numel) * element_size;
  }

  absl::StatusOr<StateDictLayout> layout =
      ExtractStateDict(object.arena(), *root, path, roots);
  if (!layout.ok()) return layout.status();
  for (const TensorRecord& tensor : layout->tensors) {
    const StorageRecord& storage = layout->storages[tensor.storage];
    if (!has_data[root_of_key.at(storage.key)]) {
      return absl::DataLossError(
          absl::StrCat(where, ": the data of storage ", Quote(storage.key),
                       " (tensor ", Quote(tensor.name), ") is missing"));
    }
  }
  return layout;
}

}  // namespace chexnet
}  // namespace kolo
