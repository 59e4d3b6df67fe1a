// Lets TokenTrail drop DuckDB's dead buffer-pool entries (see `store::ffi::RawDatabase::
// purge_idle_blocks`). Compiled against the headers of the DuckDB this binary links
// (libduckdb-sys publishes them for shims like this one), with the same NDEBUG/DEBUG.
#include "duckdb.hpp"
#include "duckdb/main/capi/capi_internal.hpp"
#include "duckdb/storage/buffer/buffer_pool.hpp"
#include "duckdb/storage/buffer_manager.hpp"

#include <cstdint>

namespace {
// `PurgeAgedBlocks` is protected (DuckDB keeps it for extensions); a pointer to it named
// through a derived class is the standard way to reach it without changing DuckDB.
struct PoolAccess : duckdb::BufferPool {
	static auto Purge() -> decltype(&PoolAccess::PurgeAgedBlocks) {
		return &PoolAccess::PurgeAgedBlocks;
	}
};
} // namespace

// Unloads the blocks not pinned for `max_age_secs` (every unpinned block unless DuckDB
// tracks unpin times, which it does not by default) and, on the way, frees the queue's
// entries whose blocks are gone. Returns the bytes unloaded, or -1 on any error.
extern "C" int64_t tokentrail_purge_idle_blocks(duckdb_database database, uint32_t max_age_secs) {
	if (!database) {
		return -1;
	}
	try {
		auto &wrapper = *reinterpret_cast<duckdb::DatabaseWrapper *>(database);
		if (!wrapper.database) {
			return -1;
		}
		auto &pool = wrapper.database->instance->GetBufferManager().GetBufferPool();
		return static_cast<int64_t>((pool.*PoolAccess::Purge())(max_age_secs));
	} catch (...) {
		return -1;
	}
}
