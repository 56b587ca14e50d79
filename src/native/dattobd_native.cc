// SPDX-License-Identifier: GPL-2.0-only
/*
 * node-addon-api binding for the dattobd control device.
 *
 * One function per ioctl of the ABI in kernel/include/uapi/dattobd.h (the
 * structs are filled here from that header, so their layout is the
 * compiler's, never a copy), plus raw entry points used by tests to pass
 * malformed buffers and wild pointers to the kernel.
 *
 * Every call opens the control device read-only, issues one ioctl and
 * closes it again (like libdattobd). Failures throw an Error with
 * `errno` (positive number), `code` (errno name), `syscall` and `path`.
 */
#include <napi.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <string>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "copy_engine.h"
#include "dattobd.h"
#include "native_errors.h"

namespace {

std::string g_ctl_path = "/dev/datto-ctl";

/* Issue one ioctl on the control device; throws on failure. */
long CtlIoctl(Napi::Env env, unsigned long cmd, void *arg, const char *what)
{
	int fd = open(g_ctl_path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		throw ErrnoError(env, errno, "open", g_ctl_path,
				 std::string(what) + ": cannot open " +
					 g_ctl_path);
	long r = ioctl(fd, cmd, arg);
	int err = errno;
	close(fd);
	if (r < 0)
		throw ErrnoError(env, err, "ioctl", g_ctl_path, what);
	return r;
}

/* An unsigned integer argument: a non-negative safe integer or a BigInt. */
uint64_t ToU64(const Napi::Value &v, const char *name, uint64_t max)
{
	Napi::Env env = v.Env();
	uint64_t out;
	if (v.IsBigInt()) {
		bool lossless = false;
		out = v.As<Napi::BigInt>().Uint64Value(&lossless);
		if (!lossless)
			throw Napi::RangeError::New(
				env, std::string(name) + " does not fit in 64 bits");
	} else if (v.IsNumber()) {
		double d = v.As<Napi::Number>().DoubleValue();
		if (!(d >= 0) || d > 9007199254740991.0 || d != (double)(uint64_t)d)
			throw Napi::RangeError::New(
				env, std::string(name) +
					     " must be a non-negative integer");
		out = (uint64_t)d;
	} else {
		throw Napi::TypeError::New(
			env, std::string(name) + " must be a number or bigint");
	}
	if (out > max)
		throw Napi::RangeError::New(env, std::string(name) +
							 " is out of range");
	return out;
}

unsigned int ToMinor(const Napi::Value &v)
{
	return (unsigned int)ToU64(v, "minor", UINT32_MAX);
}

/*
 * A path argument. `null` is passed to the kernel as a NULL pointer (the
 * kernel must answer EINVAL); embedded NUL bytes are refused here.
 */
struct PathArg {
	bool is_null = true;
	std::string s;
	char *ptr() { return is_null ? nullptr : &s[0]; }
};

PathArg ToPath(const Napi::Value &v, const char *name)
{
	PathArg p;
	if (v.IsNull() || v.IsUndefined())
		return p;
	if (!v.IsString())
		throw Napi::TypeError::New(
			v.Env(), std::string(name) + " must be a string or null");
	p.is_null = false;
	p.s = v.As<Napi::String>().Utf8Value();
	if (p.s.find('\0') != std::string::npos)
		throw Napi::TypeError::New(
			v.Env(), std::string(name) + " contains a NUL byte");
	return p;
}

Napi::Object ArgObject(const Napi::CallbackInfo &info)
{
	if (info.Length() < 1 || !info[0].IsObject())
		throw Napi::TypeError::New(info.Env(),
					   "expected a parameter object");
	return info[0].As<Napi::Object>();
}

Napi::Value SetupSnap(const Napi::CallbackInfo &info)
{
	Napi::Object o = ArgObject(info);
	PathArg bdev = ToPath(o.Get("bdev"), "bdev");
	PathArg cow = ToPath(o.Get("cow"), "cow");
	struct setup_params p;
	memset(&p, 0, sizeof(p));
	p.bdev = bdev.ptr();
	p.cow = cow.ptr();
	p.fallocated_space = ToU64(o.Get("fallocatedSpace"), "fallocatedSpace",
				   UINT64_MAX);
	p.cache_size = ToU64(o.Get("cacheSize"), "cacheSize", UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), IOCTL_SETUP_SNAP, &p, "IOCTL_SETUP_SNAP");
	return info.Env().Undefined();
}

Napi::Value Reload(const Napi::CallbackInfo &info, unsigned long cmd,
		   const char *what)
{
	Napi::Object o = ArgObject(info);
	PathArg bdev = ToPath(o.Get("bdev"), "bdev");
	PathArg cow = ToPath(o.Get("cow"), "cow");
	struct reload_params p;
	memset(&p, 0, sizeof(p));
	p.bdev = bdev.ptr();
	p.cow = cow.ptr();
	p.cache_size = ToU64(o.Get("cacheSize"), "cacheSize", UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), cmd, &p, what);
	return info.Env().Undefined();
}

Napi::Value ReloadSnap(const Napi::CallbackInfo &info)
{
	return Reload(info, IOCTL_RELOAD_SNAP, "IOCTL_RELOAD_SNAP");
}

Napi::Value ReloadInc(const Napi::CallbackInfo &info)
{
	return Reload(info, IOCTL_RELOAD_INC, "IOCTL_RELOAD_INC");
}

Napi::Value Destroy(const Napi::CallbackInfo &info)
{
	unsigned int minor = ToMinor(info[0]);
	CtlIoctl(info.Env(), IOCTL_DESTROY, &minor, "IOCTL_DESTROY");
	return info.Env().Undefined();
}

Napi::Value TransitionInc(const Napi::CallbackInfo &info)
{
	unsigned int minor = ToMinor(info[0]);
	CtlIoctl(info.Env(), IOCTL_TRANSITION_INC, &minor,
		 "IOCTL_TRANSITION_INC");
	return info.Env().Undefined();
}

Napi::Value TransitionSnap(const Napi::CallbackInfo &info)
{
	Napi::Object o = ArgObject(info);
	PathArg cow = ToPath(o.Get("cow"), "cow");
	struct transition_snap_params p;
	memset(&p, 0, sizeof(p));
	p.cow = cow.ptr();
	p.fallocated_space = ToU64(o.Get("fallocatedSpace"), "fallocatedSpace",
				   UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), IOCTL_TRANSITION_SNAP, &p,
		 "IOCTL_TRANSITION_SNAP");
	return info.Env().Undefined();
}

Napi::Value Reconfigure(const Napi::CallbackInfo &info)
{
	Napi::Object o = ArgObject(info);
	struct reconfigure_params p;
	memset(&p, 0, sizeof(p));
	p.cache_size = ToU64(o.Get("cacheSize"), "cacheSize", UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), IOCTL_RECONFIGURE, &p, "IOCTL_RECONFIGURE");
	return info.Env().Undefined();
}

Napi::Value ExpandCowFile(const Napi::CallbackInfo &info)
{
	Napi::Object o = ArgObject(info);
	struct expand_cow_file_params p;
	memset(&p, 0, sizeof(p));
	p.size = ToU64(o.Get("size"), "size", UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), IOCTL_EXPAND_COW_FILE, &p,
		 "IOCTL_EXPAND_COW_FILE");
	return info.Env().Undefined();
}

Napi::Value ReconfigureAutoExpand(const Napi::CallbackInfo &info)
{
	Napi::Object o = ArgObject(info);
	struct reconfigure_auto_expand_params p;
	memset(&p, 0, sizeof(p));
	p.step_size = ToU64(o.Get("stepSize"), "stepSize", UINT64_MAX);
	p.reserved_space =
		ToU64(o.Get("reservedSpace"), "reservedSpace", UINT64_MAX);
	p.minor = ToMinor(o.Get("minor"));
	CtlIoctl(info.Env(), IOCTL_RECONFIGURE_AUTO_EXPAND, &p,
		 "IOCTL_RECONFIGURE_AUTO_EXPAND");
	return info.Env().Undefined();
}

/* A number, or a BigInt when it does not fit in a double exactly. */
Napi::Value U64Value(Napi::Env env, uint64_t v)
{
	if (v <= 9007199254740991ULL)
		return Napi::Number::New(env, (double)v);
	return Napi::BigInt::New(env, v);
}

std::string BoundedString(const char *s, size_t max)
{
	return std::string(s, strnlen(s, max));
}

Napi::Value Info(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	struct dattobd_info di;
	memset(&di, 0, sizeof(di));
	di.minor = ToMinor(info[0]);
	CtlIoctl(env, IOCTL_DATTOBD_INFO, &di, "IOCTL_DATTOBD_INFO");

	static const char hex[] = "0123456789abcdef";
	std::string uuid;
	for (size_t i = 0; i < COW_UUID_SIZE; i++) {
		unsigned char c = (unsigned char)di.uuid[i];
		uuid += hex[c >> 4];
		uuid += hex[c & 15];
	}
	Napi::Object o = Napi::Object::New(env);
	o.Set("minor", Napi::Number::New(env, di.minor));
	o.Set("state", U64Value(env, di.state));
	o.Set("error", Napi::Number::New(env, di.error));
	o.Set("cacheSize", U64Value(env, di.cache_size));
	o.Set("fallocSize", U64Value(env, di.falloc_size));
	o.Set("seqid", U64Value(env, di.seqid));
	o.Set("uuid", Napi::String::New(env, uuid));
	o.Set("cow", Napi::String::New(env, BoundedString(di.cow, sizeof(di.cow))));
	o.Set("bdev",
	      Napi::String::New(env, BoundedString(di.bdev, sizeof(di.bdev))));
	o.Set("version", U64Value(env, di.version));
	o.Set("nrChangedBlocks", U64Value(env, di.nr_changed_blocks));
	return o;
}

Napi::Value GetFree(const Napi::CallbackInfo &info)
{
	int minor = -1;
	CtlIoctl(info.Env(), IOCTL_GET_FREE, &minor, "IOCTL_GET_FREE");
	return Napi::Number::New(info.Env(), minor);
}

unsigned long ToCmd(const Napi::Value &v)
{
	return (unsigned long)ToU64(v, "cmd", UINT64_MAX);
}

/*
 * rawIoctl(cmd, buffer | null): the buffer's memory is passed as the ioctl
 * argument (in/out, the kernel may write into it); null passes NULL.
 * Returns the ioctl's return value.
 */
Napi::Value RawIoctl(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	unsigned long cmd = ToCmd(info[0]);
	void *arg = nullptr;
	if (info.Length() > 1 && !info[1].IsNull() && !info[1].IsUndefined()) {
		if (!info[1].IsTypedArray())
			throw Napi::TypeError::New(
				env, "buffer must be a Uint8Array or null");
		Napi::Uint8Array b = info[1].As<Napi::Uint8Array>();
		arg = b.Data();
	}
	long r = CtlIoctl(env, cmd, arg, "raw ioctl");
	return Napi::Number::New(env, (double)r);
}

/* ioctlWithPointer(cmd, address): pass an arbitrary (wild) user address. */
Napi::Value IoctlWithPointer(const Napi::CallbackInfo &info)
{
	unsigned long cmd = ToCmd(info[0]);
	uint64_t addr = ToU64(info[1], "address", UINT64_MAX);
	long r = CtlIoctl(info.Env(), cmd, (void *)(uintptr_t)addr,
			  "ioctl with pointer");
	return Napi::Number::New(info.Env(), (double)r);
}

/* Size in bytes of a block device (BLKGETSIZE64). */
Napi::Value BlockDeviceSize(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	PathArg path = ToPath(info[0], "path");
	if (path.is_null)
		throw Napi::TypeError::New(env, "path must be a string");
	int fd = open(path.s.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		throw ErrnoError(env, errno, "open", path.s,
				 "cannot open " + path.s);
	uint64_t size = 0;
	int r = ioctl(fd, BLKGETSIZE64, &size);
	int err = errno;
	close(fd);
	if (r < 0)
		throw ErrnoError(env, err, "ioctl", path.s,
				 "BLKGETSIZE64 on " + path.s);
	return U64Value(env, size);
}

Napi::Value SetControlPath(const Napi::CallbackInfo &info)
{
	PathArg path = ToPath(info[0], "path");
	if (path.is_null)
		throw Napi::TypeError::New(info.Env(), "path must be a string");
	g_ctl_path = path.s;
	return info.Env().Undefined();
}

Napi::Value GetControlPath(const Napi::CallbackInfo &info)
{
	return Napi::String::New(info.Env(), g_ctl_path);
}

/* The ABI as this compiler sees it (ioctl numbers, struct sizes). */
Napi::Object AbiObject(Napi::Env env)
{
	Napi::Object ioctls = Napi::Object::New(env);
#define IOC(n) ioctls.Set(#n, Napi::Number::New(env, (double)IOCTL_##n))
	IOC(SETUP_SNAP);
	IOC(RELOAD_SNAP);
	IOC(RELOAD_INC);
	IOC(DESTROY);
	IOC(TRANSITION_INC);
	IOC(TRANSITION_SNAP);
	IOC(RECONFIGURE);
	IOC(DATTOBD_INFO);
	IOC(GET_FREE);
	IOC(EXPAND_COW_FILE);
	IOC(RECONFIGURE_AUTO_EXPAND);
#undef IOC
	Napi::Object sizes = Napi::Object::New(env);
#define SZ(s) sizes.Set(#s, Napi::Number::New(env, (double)sizeof(struct s)))
	SZ(setup_params);
	SZ(reload_params);
	SZ(transition_snap_params);
	SZ(reconfigure_params);
	SZ(expand_cow_file_params);
	SZ(reconfigure_auto_expand_params);
	SZ(dattobd_info);
	SZ(cow_header);
#undef SZ
	Napi::Object abi = Napi::Object::New(env);
	abi.Set("ioctl", ioctls);
	abi.Set("structSize", sizes);
	return abi;
}

Napi::Object Init(Napi::Env env, Napi::Object exports)
{
	exports.Set("setupSnap", Napi::Function::New(env, SetupSnap));
	exports.Set("reloadSnap", Napi::Function::New(env, ReloadSnap));
	exports.Set("reloadInc", Napi::Function::New(env, ReloadInc));
	exports.Set("destroy", Napi::Function::New(env, Destroy));
	exports.Set("transitionInc", Napi::Function::New(env, TransitionInc));
	exports.Set("transitionSnap", Napi::Function::New(env, TransitionSnap));
	exports.Set("reconfigure", Napi::Function::New(env, Reconfigure));
	exports.Set("info", Napi::Function::New(env, Info));
	exports.Set("getFree", Napi::Function::New(env, GetFree));
	exports.Set("expandCowFile", Napi::Function::New(env, ExpandCowFile));
	exports.Set("reconfigureAutoExpand",
		    Napi::Function::New(env, ReconfigureAutoExpand));
	exports.Set("rawIoctl", Napi::Function::New(env, RawIoctl));
	exports.Set("ioctlWithPointer",
		    Napi::Function::New(env, IoctlWithPointer));
	exports.Set("blockDeviceSize",
		    Napi::Function::New(env, BlockDeviceSize));
	exports.Set("setControlPath", Napi::Function::New(env, SetControlPath));
	exports.Set("getControlPath", Napi::Function::New(env, GetControlPath));
	exports.Set("abi", AbiObject(env));
	InitCopyEngine(env, exports);
	return exports;
}

} // namespace

NODE_API_MODULE(dattobd_native, Init)
