#include "validation.hpp"

#include <cctype>

namespace vigie::user {

namespace {

bool valid_label(std::string_view label) {
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') {
        return false;
    }
    for (char c : label) {
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
            return false;
        }
    }
    return true;
}

}  // namespace

bool valid_email(std::string_view email) {
    if (email.size() < 3 || email.size() > 254) {
        return false;
    }
    auto at = email.find('@');
    if (at == std::string_view::npos || at == 0 || at > 64 || email.find('@', at + 1) != std::string_view::npos) {
        return false;
    }
    auto local = email.substr(0, at);
    for (char c : local) {
        auto u = static_cast<unsigned char>(c);
        if (u <= 0x20 || u >= 0x7F || c == '"' || c == '(' || c == ')' || c == ',' || c == ':' || c == ';' ||
            c == '<' || c == '>' || c == '[' || c == ']' || c == '\\') {
            return false;
        }
    }
    if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
        return false;
    }
    auto domain = email.substr(at + 1);
    if (domain.find('.') == std::string_view::npos) {
        return false;
    }
    while (!domain.empty()) {
        auto dot = domain.find('.');
        if (!valid_label(domain.substr(0, dot))) {
            return false;
        }
        domain = dot == std::string_view::npos ? std::string_view() : domain.substr(dot + 1);
        if (dot != std::string_view::npos && domain.empty()) {
            return false;
        }
    }
    return true;
}

}  // namespace vigie::user
