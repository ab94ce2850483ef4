#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace vigie::http {

/// A string-keyed map that never holds more than `capacity` entries and forgets the least recently used ones in
/// bulk: entries live in a current and a previous generation; a lookup that hits the previous generation moves the
/// entry forward, and when the current generation is full the previous one is dropped whole. O(1) per operation,
/// no per-entry list, and an entry survives as long as it is used at least once per capacity/2 distinct keys.
/// Used for per-client state on the request path (rate-limit buckets, verified tokens), where clients are
/// attacker-controlled and the table must stay bounded.
template <class Value>
class GenerationalMap {
  public:
    /// `capacity` >= 2 (two generations of capacity/2 each).
    explicit GenerationalMap(std::size_t capacity) : generation_capacity_(capacity < 2 ? 1 : capacity / 2) {}

    /// The entry for `key`, or nullptr. A hit in the previous generation is moved into the current one.
    Value* find(std::string_view key) {
        if (auto it = current_.find(key); it != current_.end()) {
            return &it->second;
        }
        auto old = previous_.find(key);
        if (old == previous_.end()) {
            return nullptr;
        }
        auto node = previous_.extract(old);
        make_room();
        return &current_.insert(std::move(node)).position->second;
    }

    /// The entry for `key`, created from `make()` when absent.
    template <class Make>
    Value& find_or_create(std::string_view key, Make&& make) {
        if (auto* found = find(key)) {
            return *found;
        }
        make_room();
        return current_.emplace(std::string(key), std::forward<Make>(make)()).first->second;
    }

    std::size_t size() const { return current_.size() + previous_.size(); }
    std::size_t capacity() const { return generation_capacity_ * 2; }
    void clear() {
        current_.clear();
        previous_.clear();
    }

  private:
    struct Hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view text) const { return std::hash<std::string_view>{}(text); }
    };
    using Map = std::unordered_map<std::string, Value, Hash, std::equal_to<>>;

    void make_room() {
        if (current_.size() >= generation_capacity_) {
            previous_ = std::move(current_);
            current_ = Map();
        }
    }

    std::size_t generation_capacity_;
    Map current_;
    Map previous_;
};

}  // namespace vigie::http
