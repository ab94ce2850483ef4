// Anchor for the shared precompiled header (services/pch.hpp); see services/CMakeLists.txt.
