/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Errors thrown (or rejected) by the binding for a failed system call: an
 * Error with `errno` (positive number), `code` (errno name), `syscall` and
 * `path`, shared by the ioctl entry points and the copy engine.
 */
#ifndef DATTOBD_NATIVE_ERRORS_H
#define DATTOBD_NATIVE_ERRORS_H

#include <napi.h>

#include <cstring>
#include <string>

inline std::string ErrnoName(int err)
{
	const char *name = strerrorname_np(err);
	return name ? std::string(name) : "E" + std::to_string(err);
}

inline Napi::Error ErrnoError(Napi::Env env, int err, const char *syscall,
			      const std::string &path, const std::string &what)
{
	std::string msg = what + ": " + ErrnoName(err) + " (" + strerror(err) +
			  ")";
	Napi::Error e = Napi::Error::New(env, msg);
	Napi::Object o = e.Value();
	o.Set("errno", Napi::Number::New(env, err));
	o.Set("code", Napi::String::New(env, ErrnoName(err)));
	o.Set("syscall", Napi::String::New(env, syscall));
	o.Set("path", Napi::String::New(env, path));
	return e;
}

#endif
