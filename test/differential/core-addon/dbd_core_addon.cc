// SPDX-License-Identifier: GPL-2.0-only
/*
 * Userspace node addon over the kernel module's decision core
 * (kernel/core/dbd_core.h). Each function is a thin wrapper around one core
 * function: arguments are converted (u64 as BigInt or safe integer), the C
 * function is called, and its result is returned unchanged (errno values
 * stay negative, as the core returns them). No logic of its own.
 */
#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "dbd_core.h"
}

namespace {

uint64_t ToU64(const Napi::Value &v, const char *name)
{
	Napi::Env env = v.Env();
	if (v.IsBigInt()) {
		bool lossless = false;
		uint64_t out = v.As<Napi::BigInt>().Uint64Value(&lossless);
		if (!lossless)
			throw Napi::RangeError::New(
				env, std::string(name) + " does not fit in u64");
		return out;
	}
	if (v.IsNumber()) {
		double d = v.As<Napi::Number>().DoubleValue();
		if (!(d >= 0) || d > 9007199254740991.0 ||
		    d != static_cast<double>(static_cast<uint64_t>(d)))
			throw Napi::RangeError::New(
				env, std::string(name) +
					     " must be a non-negative integer");
		return static_cast<uint64_t>(d);
	}
	if (v.IsBoolean())
		return v.As<Napi::Boolean>().Value() ? 1 : 0;
	throw Napi::TypeError::New(env, std::string(name) +
						" must be a number or BigInt");
}

uint64_t ArgU64(const Napi::CallbackInfo &info, size_t i, const char *name)
{
	if (info.Length() <= i)
		throw Napi::TypeError::New(info.Env(),
					   std::string("missing ") + name);
	return ToU64(info[i], name);
}

Napi::BigInt Big(Napi::Env env, uint64_t v)
{
	return Napi::BigInt::New(env, v);
}

const uint8_t *BytesArg(const Napi::CallbackInfo &info, size_t i,
			size_t need, const char *name)
{
	if (info.Length() <= i || !info[i].IsTypedArray())
		throw Napi::TypeError::New(info.Env(),
					   std::string(name) +
						   " must be a Uint8Array");
	Napi::Uint8Array a = info[i].As<Napi::Uint8Array>();
	if (a.ByteLength() < need)
		throw Napi::RangeError::New(info.Env(),
					    std::string(name) + " is too short");
	return a.Data();
}

Napi::Buffer<uint8_t> Bytes(Napi::Env env, const void *p, size_t n)
{
	return Napi::Buffer<uint8_t>::Copy(env, static_cast<const uint8_t *>(p),
					   n);
}

/* ---- geometry, sizes, append rule ---------------------------------- */

Napi::Value Geometry(const Napi::CallbackInfo &info)
{
	struct dbd_geometry g;
	dbd_geometry_init(&g, ArgU64(info, 0, "sizeSectors"));
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	o.Set("sizeSectors", Big(env, g.size_sectors));
	o.Set("nblocks", Big(env, g.nblocks));
	o.Set("totalSects", Big(env, g.total_sects));
	o.Set("indexBytes", Big(env, g.index_bytes));
	o.Set("dataOffset", Big(env, g.data_offset));
	o.Set("firstDataBlk", Big(env, g.first_data_blk));
	o.Set("memSects", Big(env, g.mem_sects));
	return o;
}

Napi::Value DefaultCowBytes(const Napi::CallbackInfo &info)
{
	return Big(info.Env(),
		   dbd_default_cow_bytes(ArgU64(info, 0, "sizeSectors"),
					 (unsigned int)ArgU64(info, 1, "percent")));
}

Napi::Value CowFileBytes(const Napi::CallbackInfo &info)
{
	u64 remembered = 0;
	u64 bytes = dbd_cow_file_bytes(ArgU64(info, 0, "sizeSectors"),
				       ArgU64(info, 1, "fallocatedMib"),
				       (unsigned int)ArgU64(info, 2, "percent"),
				       &remembered);
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	o.Set("bytes", Big(env, bytes));
	o.Set("rememberedMib", Big(env, remembered));
	return o;
}

Napi::Value CacheSectionsAllowed(const Napi::CallbackInfo &info)
{
	return Big(info.Env(),
		   dbd_cache_sections_allowed(ArgU64(info, 0, "cacheBytes"),
					      ArgU64(info, 1, "totalSects")));
}

Napi::Value BlockRange(const Napi::CallbackInfo &info)
{
	u64 first = 0, last = 0;
	int rc = dbd_block_range(ArgU64(info, 0, "startSect"),
				 ArgU64(info, 1, "nrSects"), &first, &last);
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	o.Set("rc", Napi::Number::New(env, rc));
	o.Set("first", Big(env, first));
	o.Set("last", Big(env, last));
	return o;
}

Napi::Value CowAllocBlock(const Napi::CallbackInfo &info)
{
	u64 fpos = ArgU64(info, 0, "fpos");
	u64 blk = 0;
	int rc = dbd_cow_alloc_block(&fpos, ArgU64(info, 1, "fsize"), &blk);
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	o.Set("rc", Napi::Number::New(env, rc));
	o.Set("fpos", Big(env, fpos));
	o.Set("blk", Big(env, blk));
	return o;
}

Napi::Value AutoExpandAllowed(const Napi::CallbackInfo &info)
{
	bool r = dbd_auto_expand_allowed(ArgU64(info, 0, "stepMib"),
					 ArgU64(info, 1, "reservedMib"),
					 ArgU64(info, 2, "statfsOk") != 0,
					 ArgU64(info, 3, "fBsize"),
					 ArgU64(info, 4, "fBavail"));
	return Napi::Boolean::New(info.Env(), r);
}

/* ---- header and index ---------------------------------------------- */

Napi::Value HeaderEncode(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 1 || !info[0].IsObject())
		throw Napi::TypeError::New(env, "header must be an object");
	Napi::Object o = info[0].As<Napi::Object>();
	struct dbd_header h;
	memset(&h, 0, sizeof(h));
	h.magic = (u32)ToU64(o.Get("magic"), "magic");
	h.flags = (u32)ToU64(o.Get("flags"), "flags");
	h.fpos = ToU64(o.Get("fpos"), "fpos");
	h.fsize = ToU64(o.Get("fsize"), "fsize");
	h.seqid = ToU64(o.Get("seqid"), "seqid");
	h.version = ToU64(o.Get("version"), "version");
	h.nr_changed_blocks = ToU64(o.Get("nrChangedBlocks"), "nrChangedBlocks");
	Napi::Value u = o.Get("uuid");
	if (!u.IsTypedArray() || u.As<Napi::Uint8Array>().ByteLength() != 16)
		throw Napi::TypeError::New(env, "uuid must be 16 bytes");
	memcpy(h.uuid, u.As<Napi::Uint8Array>().Data(), 16);
	u8 out[DBD_HEADER_USED];
	dbd_header_encode(&h, out);
	return Bytes(env, out, sizeof(out));
}

Napi::Object HeaderObject(Napi::Env env, const struct dbd_header &h)
{
	Napi::Object o = Napi::Object::New(env);
	o.Set("magic", Napi::Number::New(env, h.magic));
	o.Set("flags", Napi::Number::New(env, h.flags));
	o.Set("fpos", Big(env, h.fpos));
	o.Set("fsize", Big(env, h.fsize));
	o.Set("seqid", Big(env, h.seqid));
	o.Set("uuid", Bytes(env, h.uuid, 16));
	o.Set("version", Big(env, h.version));
	o.Set("nrChangedBlocks", Big(env, h.nr_changed_blocks));
	return o;
}

Napi::Value HeaderDecode(const Napi::CallbackInfo &info)
{
	struct dbd_header h;
	dbd_header_decode(BytesArg(info, 0, DBD_HEADER_USED, "bytes"), &h);
	return HeaderObject(info.Env(), h);
}

/* Decode the 64 bytes, then run the reload/reopen check on them. */
Napi::Value HeaderCheckReload(const Napi::CallbackInfo &info)
{
	struct dbd_header h;
	dbd_header_decode(BytesArg(info, 0, DBD_HEADER_USED, "bytes"), &h);
	int rc = dbd_header_check_reload(&h, ArgU64(info, 1, "indexOnly") != 0);
	return Napi::Number::New(info.Env(), rc);
}

/* Decode the 64 bytes, then check them against a device size and file size. */
Napi::Value HeaderCheckLayout(const Napi::CallbackInfo &info)
{
	struct dbd_header h;
	struct dbd_geometry g;

	dbd_header_decode(BytesArg(info, 0, DBD_HEADER_USED, "bytes"), &h);
	dbd_geometry_init(&g, ArgU64(info, 1, "sizeSectors"));
	int rc = dbd_header_check_layout(&h, &g, ArgU64(info, 2, "indexOnly") != 0,
					 ArgU64(info, 3, "fileBytes"));
	return Napi::Number::New(info.Env(), rc);
}

Napi::Value IndexEntryEncode(const Napi::CallbackInfo &info)
{
	u8 out[8];
	dbd_index_entry_encode(ArgU64(info, 0, "value"), out);
	return Bytes(info.Env(), out, 8);
}

Napi::Value IndexEntryDecode(const Napi::CallbackInfo &info)
{
	return Big(info.Env(),
		   dbd_index_entry_decode(BytesArg(info, 0, 8, "bytes")));
}

/* (value, sizeSectors, fpos): does a snapshot entry point at saved data? */
Napi::Value IndexEntrySaved(const Napi::CallbackInfo &info)
{
	struct dbd_geometry g;

	dbd_geometry_init(&g, ArgU64(info, 1, "sizeSectors"));
	return Napi::Boolean::New(info.Env(),
				  dbd_index_entry_saved(ArgU64(info, 0, "value"), &g,
							ArgU64(info, 2, "fpos")));
}

Napi::Value IndexEntryOffset(const Napi::CallbackInfo &info)
{
	return Big(info.Env(), dbd_index_entry_offset(ArgU64(info, 0, "block")));
}

/* ---- ioctl checks and state table ----------------------------------- */

Napi::Value CheckCmd(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 4 || !info[3].IsObject())
		throw Napi::TypeError::New(env, "checkCmd(cmd, minor, max, view)");
	Napi::Object v = info[3].As<Napi::Object>();
	struct dbd_minor_view view;
	view.exists = v.Get("exists").ToBoolean().Value();
	view.busy = v.Get("busy").ToBoolean().Value();
	view.fail_code = v.Get("failCode").ToNumber().Int32Value();
	view.state = (unsigned long)ToU64(v.Get("state"), "state");
	int rc = dbd_check_cmd((enum dbd_cmd)ArgU64(info, 0, "cmd"),
			       (unsigned int)ArgU64(info, 1, "minor"),
			       (unsigned int)ArgU64(info, 2, "maxDevices"),
			       &view);
	return Napi::Number::New(env, rc);
}

Napi::Value MaxDevices(const Napi::CallbackInfo &info)
{
	return Napi::Number::New(
		info.Env(), dbd_max_devices((unsigned int)ArgU64(info, 0, "param")));
}

Napi::Value StateNext(const Napi::CallbackInfo &info)
{
	unsigned long next = 0xdeadbeef;
	int rc = dbd_state_next((unsigned long)ArgU64(info, 0, "state"),
				(enum dbd_event)ArgU64(info, 1, "event"), &next);
	Napi::Env env = info.Env();
	Napi::Object o = Napi::Object::New(env);
	o.Set("rc", Napi::Number::New(env, rc));
	o.Set("next", Napi::Number::New(env, rc ? -1 : (double)next));
	return o;
}

/* ---- /proc text ------------------------------------------------------ */

/* NUL-terminated copy of a byte argument (stops at the first NUL). */
std::string CString(const Napi::Value &v, const char *name)
{
	if (v.IsString())
		return v.As<Napi::String>().Utf8Value();
	if (v.IsTypedArray()) {
		Napi::Uint8Array a = v.As<Napi::Uint8Array>();
		std::string s(reinterpret_cast<const char *>(a.Data()),
			      a.ByteLength());
		return s.substr(0, s.find('\0'));
	}
	throw Napi::TypeError::New(v.Env(), std::string(name) +
						    " must be a string or bytes");
}

/* jsonEscape(src, size?) -> { len, out }: out holds what fitted in size. */
Napi::Value JsonEscape(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string src = CString(info[0], "src");
	size_t need = dbd_json_escape(nullptr, 0, src.c_str());
	size_t size = info.Length() > 1 ? (size_t)ArgU64(info, 1, "size")
					: need + 1;
	std::vector<char> buf(size + 16, '\x55');
	size_t len = dbd_json_escape(size ? buf.data() : nullptr, size,
				     src.c_str());
	Napi::Object o = Napi::Object::New(env);
	o.Set("len", Napi::Number::New(env, (double)len));
	o.Set("out", Bytes(env, buf.data(), size ? strlen(buf.data()) : 0));
	/* bytes past `size` must be untouched */
	bool guard_ok = true;
	for (size_t i = size; i < size + 16; i++)
		guard_ok = guard_ok && buf[i] == '\x55';
	o.Set("guardOk", Napi::Boolean::New(env, guard_ok));
	return o;
}

template <typename F> Napi::Value Snprintf(Napi::Env env, F f)
{
	size_t need = f(nullptr, 0);
	std::vector<char> buf(need + 1);
	size_t len = f(buf.data(), buf.size());
	if (len != need)
		throw Napi::Error::New(env, "proc formatter length changed");
	return Bytes(env, buf.data(), len);
}

Napi::Value ProcHead(const Napi::CallbackInfo &info)
{
	return Snprintf(info.Env(), [](char *b, size_t s) {
		return dbd_proc_head(b, s);
	});
}

Napi::Value ProcTail(const Napi::CallbackInfo &info)
{
	return Snprintf(info.Env(), [](char *b, size_t s) {
		return dbd_proc_tail(b, s);
	});
}

Napi::Value ProcDev(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	if (info.Length() < 2 || !info[0].IsObject())
		throw Napi::TypeError::New(env, "procDev(dev, first)");
	Napi::Object o = info[0].As<Napi::Object>();
	std::string cow = CString(o.Get("cowFile"), "cowFile");
	std::string bdev = CString(o.Get("blockDevice"), "blockDevice");
	struct dbd_proc_dev d;
	memset(&d, 0, sizeof(d));
	d.minor = (unsigned int)ToU64(o.Get("minor"), "minor");
	d.cow_file = cow.c_str();
	d.block_device = bdev.c_str();
	d.max_cache = ToU64(o.Get("maxCache"), "maxCache");
	d.unverified = o.Get("unverified").ToBoolean().Value();
	d.has_cow = o.Get("hasCow").ToBoolean().Value();
	d.fallocate_bytes = ToU64(o.Get("fallocateBytes"), "fallocateBytes");
	d.cow_size_current = ToU64(o.Get("cowSizeCurrent"), "cowSizeCurrent");
	d.seq_id = ToU64(o.Get("seqId"), "seqId");
	Napi::Value u = o.Get("uuid");
	if (!u.IsTypedArray() || u.As<Napi::Uint8Array>().ByteLength() != 16)
		throw Napi::TypeError::New(env, "uuid must be 16 bytes");
	memcpy(d.uuid, u.As<Napi::Uint8Array>().Data(), 16);
	d.version = ToU64(o.Get("version"), "version");
	d.nr_changed_blocks = ToU64(o.Get("nrChangedBlocks"), "nrChangedBlocks");
	d.has_auto_expand = o.Get("hasAutoExpand").ToBoolean().Value();
	d.step_size_mib = ToU64(o.Get("stepSizeMib"), "stepSizeMib");
	d.reserved_space_mib = ToU64(o.Get("reservedSpaceMib"), "reservedSpaceMib");
	d.error = o.Get("error").ToNumber().Int32Value();
	d.state = (unsigned long)ToU64(o.Get("state"), "state");
	bool first = info[1].ToBoolean().Value();
	return Snprintf(env, [&](char *b, size_t s) {
		return dbd_proc_dev(b, s, &d, first);
	});
}

Napi::Object Constants(Napi::Env env)
{
	Napi::Object c = Napi::Object::New(env);
	Napi::Object cmd = Napi::Object::New(env);
	cmd.Set("SETUP_SNAP", (int)DBD_CMD_SETUP_SNAP);
	cmd.Set("RELOAD_SNAP", (int)DBD_CMD_RELOAD_SNAP);
	cmd.Set("RELOAD_INC", (int)DBD_CMD_RELOAD_INC);
	cmd.Set("DESTROY", (int)DBD_CMD_DESTROY);
	cmd.Set("TRANSITION_INC", (int)DBD_CMD_TRANSITION_INC);
	cmd.Set("TRANSITION_SNAP", (int)DBD_CMD_TRANSITION_SNAP);
	cmd.Set("RECONFIGURE", (int)DBD_CMD_RECONFIGURE);
	cmd.Set("INFO", (int)DBD_CMD_INFO);
	cmd.Set("GET_FREE", (int)DBD_CMD_GET_FREE);
	cmd.Set("EXPAND_COW_FILE", (int)DBD_CMD_EXPAND_COW_FILE);
	cmd.Set("RECONFIGURE_AUTO_EXPAND", (int)DBD_CMD_RECONFIGURE_AUTO_EXPAND);
	c.Set("cmd", cmd);
	Napi::Object ev = Napi::Object::New(env);
	ev.Set("SETUP", (int)DBD_EV_SETUP);
	ev.Set("RELOAD_SNAP", (int)DBD_EV_RELOAD_SNAP);
	ev.Set("RELOAD_INC", (int)DBD_EV_RELOAD_INC);
	ev.Set("TRANSITION_INC", (int)DBD_EV_TRANSITION_INC);
	ev.Set("TRANSITION_SNAP", (int)DBD_EV_TRANSITION_SNAP);
	ev.Set("MOUNT_RW", (int)DBD_EV_MOUNT_RW);
	ev.Set("UMOUNT", (int)DBD_EV_UMOUNT);
	ev.Set("UMOUNT_FAILED", (int)DBD_EV_UMOUNT_FAILED);
	c.Set("event", ev);
	Napi::Object e = Napi::Object::New(env);
	e.Set("EINVAL", EINVAL);
	e.Set("EBUSY", EBUSY);
	e.Set("ENOENT", ENOENT);
	e.Set("EFBIG", EFBIG);
	c.Set("errno", e);
	c.Set("defaultCacheBytes", Napi::Number::New(env, (double)DBD_DEFAULT_CACHE_BYTES));
	c.Set("defaultFallocPercent", DBD_DEFAULT_FALLOC_PERCENT);
	c.Set("defaultMaxDevices", DBD_DEFAULT_MAX_DEVICES);
	c.Set("hardMaxDevices", DBD_HARD_MAX_DEVICES);
	c.Set("cowMagic", DBD_COW_MAGIC);
	return c;
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	exports.Set("geometry", Napi::Function::New(env, Geometry));
	exports.Set("defaultCowBytes", Napi::Function::New(env, DefaultCowBytes));
	exports.Set("cowFileBytes", Napi::Function::New(env, CowFileBytes));
	exports.Set("cacheSectionsAllowed",
		    Napi::Function::New(env, CacheSectionsAllowed));
	exports.Set("blockRange", Napi::Function::New(env, BlockRange));
	exports.Set("cowAllocBlock", Napi::Function::New(env, CowAllocBlock));
	exports.Set("autoExpandAllowed",
		    Napi::Function::New(env, AutoExpandAllowed));
	exports.Set("headerEncode", Napi::Function::New(env, HeaderEncode));
	exports.Set("headerDecode", Napi::Function::New(env, HeaderDecode));
	exports.Set("headerCheckReload",
		    Napi::Function::New(env, HeaderCheckReload));
	exports.Set("headerCheckLayout",
		    Napi::Function::New(env, HeaderCheckLayout));
	exports.Set("indexEntryEncode", Napi::Function::New(env, IndexEntryEncode));
	exports.Set("indexEntryDecode", Napi::Function::New(env, IndexEntryDecode));
	exports.Set("indexEntrySaved", Napi::Function::New(env, IndexEntrySaved));
	exports.Set("indexEntryOffset", Napi::Function::New(env, IndexEntryOffset));
	exports.Set("checkCmd", Napi::Function::New(env, CheckCmd));
	exports.Set("maxDevices", Napi::Function::New(env, MaxDevices));
	exports.Set("stateNext", Napi::Function::New(env, StateNext));
	exports.Set("jsonEscape", Napi::Function::New(env, JsonEscape));
	exports.Set("procHead", Napi::Function::New(env, ProcHead));
	exports.Set("procTail", Napi::Function::New(env, ProcTail));
	exports.Set("procDev", Napi::Function::New(env, ProcDev));
	exports.Set("constants", Constants(env));
	return exports;
}

} // namespace

NODE_API_MODULE(dbd_core_addon, Init)
