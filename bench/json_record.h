// json_record.h — the benchmarks' result record: key/value pairs kept in insertion order,
// written as one JSON object (nlohmann::ordered_json does the writing and escaping).
#ifndef UVMEM_BENCH_JSON_RECORD_H_
#define UVMEM_BENCH_JSON_RECORD_H_

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace uvmem::bench {

class JsonRecord {
 public:
  void Num(const std::string& k, double v) { j_[k] = v; }
  void Int(const std::string& k, std::uint64_t v) { j_[k] = v; }
  void Str(const std::string& k, const std::string& v) { j_[k] = v; }
  void Bool(const std::string& k, bool v) { j_[k] = v; }
  void List(const std::string& k, const std::vector<double>& v) { j_[k] = v; }
  // The number under `k`, or -1 when there is none.
  double Get(const std::string& k) const {
    const auto it = j_.find(k);
    return it != j_.end() && it->is_number() ? it->get<double>() : -1;
  }
  // One line (indent < 0), or indented by `indent` spaces.
  std::string Dump(int indent = -1) const {
    return j_.dump(indent, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }

 private:
  nlohmann::ordered_json j_ = nlohmann::ordered_json::object();
};

}  // namespace uvmem::bench

#endif  // UVMEM_BENCH_JSON_RECORD_H_
