// SPDX-License-Identifier: GPL-2.0-only
/*
 * update-img's data copy in native threads.
 *
 * copyWindows(src, dst, plan, opts, progress) -> Promise<Int32Array>
 *
 * `plan` (Float64Array) lists read windows in 4096-byte blocks:
 *   [first, count, nparts, p0first, p0count, p1first, p1count, ...] repeated.
 * A window is read from `src` with one pread (loop on short reads; end of
 * file before the window's end is EIO); then each part (a run of changed
 * blocks inside the window) is written to the same offset of `dst` with one
 * pwrite. Lengths are clamped to opts.snapshotBytes, so the partial last
 * block of a volume is copied exactly (the bytes after it are neither needed
 * nor written).
 *
 * With opts.directWrite, `dst` is written with O_DIRECT where it accepts it
 * (the data goes from the buffer to the device: no copy into the page cache,
 * no writeback at the fsync), and parts of a window whose unchanged gap is
 * at most opts.writeGap blocks are written as one span, gap included: the
 * gap's blocks did not change since the snapshot the image holds, so they
 * are written with the contents the image has already, and one large write
 * costs less than several small direct ones. A write the file refuses with
 * EINVAL (alignment), or one whose length is not whole blocks (the partial
 * last block), goes through a second, buffered descriptor instead; after an
 * EINVAL every later write does. Without directWrite only the parts are
 * written, through the page cache.
 *
 * opts.parallel POSIX threads, each with its own 4096-aligned buffer of
 * opts.maxIo bytes, take the next window from a shared counter. The result
 * holds one entry per window: 0, or the errno of the read or write that
 * failed (the window's other parts may or may not have been written).
 * Nothing is flushed: the caller fsyncs the image once at the end.
 *
 * `src` is opened O_RDONLY (with O_DIRECT when opts.direct, falling back to a
 * buffered descriptor when the open or a first probe read answers EINVAL),
 * `dst` O_WRONLY (never created or truncated). Failing to open either rejects
 * the promise with an errno error before anything is written.
 *
 * `progress` (BigInt64Array, at least 4 entries) is updated atomically while
 * the copy runs, for Atomics.load from JavaScript:
 *   [0] bytes of changed data written by windows that completed without error
 *   [1] windows finished (with or without error)
 *   [2] changed blocks of the windows that completed without error
 *   [3] 1 when the reads use O_DIRECT, 0 when buffered (set before copying)
 */
#include "copy_engine.h"

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include "native_errors.h"

namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint32_t kMaxParallel = 256;
constexpr uint64_t kMaxIoLimit = 64ULL << 20;
constexpr double kMaxSafe = 9007199254740991.0;

enum ProgressSlot {
	kBytesWritten = 0,
	kWindowsDone = 1,
	kBlocksWritten = 2,
	kDirect = 3,
	kProgressSlots = 4,
};

struct Part {
	uint64_t first;
	uint64_t count;
};

struct Window {
	uint64_t first;
	uint64_t count;
	size_t part0;
	size_t nparts;
};

/* State shared by the copy threads of one call. */
struct Shared {
	const std::vector<Window> *windows;
	const std::vector<Part> *parts;
	int32_t *results;
	int64_t *progress;
	uint64_t snapshot_bytes;
	uint64_t write_gap; /* blocks; only with dst_direct */
	int src;
	int dst;
	int dst_direct; /* O_DIRECT descriptor of dst, or -1 */
	bool direct;
	bool direct_write_off; /* set on EINVAL, __atomic */
	size_t next; /* next window to take, __atomic_fetch_add */
};

struct Thread {
	Shared *shared;
	unsigned char *buf;
	pthread_t id;
	bool started;
};

uint64_t Clamp(const Shared &s, uint64_t first, uint64_t count)
{
	uint64_t off = first * kBlock;
	uint64_t len = count * kBlock;
	return off + len > s.snapshot_bytes ? s.snapshot_bytes - off : len;
}

/* Read at least `need` bytes (asking for `want`); 0 or an errno. */
int ReadFull(int fd, unsigned char *buf, size_t want, size_t need,
	     uint64_t off)
{
	size_t got = 0;
	while (got < need) {
		ssize_t n = pread(fd, buf + got, want - got, (off_t)(off + got));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		got += (size_t)n;
	}
	return 0;
}

int WriteFull(int fd, const unsigned char *buf, size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		if (n == 0)
			return EIO;
		done += (size_t)n;
	}
	return 0;
}

/* Write a span of whole blocks, directly where dst takes it; 0 or an errno. */
int WriteSpan(Shared &s, const unsigned char *buf, size_t len, uint64_t off)
{
	if (s.dst_direct >= 0 && len % kBlock == 0 &&
	    !__atomic_load_n(&s.direct_write_off, __ATOMIC_RELAXED)) {
		int err = WriteFull(s.dst_direct, buf, len, off);
		if (err != EINVAL)
			return err;
		__atomic_store_n(&s.direct_write_off, true, __ATOMIC_RELAXED);
	}
	return WriteFull(s.dst, buf, len, off);
}

/* Copy one window; 0 or the errno of the failing read or write. */
int CopyWindow(Shared &s, const Window &w, unsigned char *buf,
	       uint64_t *bytes, uint64_t *blocks)
{
	uint64_t need = Clamp(s, w.first, w.count);
	/* O_DIRECT wants whole blocks: ask for them, the end of file cuts the last. */
	uint64_t want = s.direct ? w.count * kBlock : need;
	int err = ReadFull(s.src, buf, (size_t)want, (size_t)need,
			   w.first * kBlock);
	if (err)
		return err;
	const Part *parts = &(*s.parts)[w.part0];
	const bool join = s.dst_direct >= 0 &&
			  !__atomic_load_n(&s.direct_write_off,
					   __ATOMIC_RELAXED);
	size_t i = 0;
	while (i < w.nparts) {
		/* parts i..j-1 make one span: the gaps between them are small */
		uint64_t first = parts[i].first;
		uint64_t end = first + parts[i].count;
		uint64_t changed = Clamp(s, first, parts[i].count);
		uint64_t nblocks = parts[i].count;
		size_t j = i + 1;
		while (join && j < w.nparts &&
		       parts[j].first - end <= s.write_gap) {
			end = parts[j].first + parts[j].count;
			changed += Clamp(s, parts[j].first, parts[j].count);
			nblocks += parts[j].count;
			j++;
		}
		err = WriteSpan(s, buf + (first - w.first) * kBlock,
				(size_t)Clamp(s, first, end - first),
				first * kBlock);
		if (err)
			return err;
		*bytes += changed;
		*blocks += nblocks;
		i = j;
	}
	return 0;
}

void *CopyThread(void *arg)
{
	Thread *t = static_cast<Thread *>(arg);
	Shared &s = *t->shared;
	const size_t n = s.windows->size();
	for (;;) {
		size_t i = __atomic_fetch_add(&s.next, 1, __ATOMIC_RELAXED);
		if (i >= n)
			break;
		uint64_t bytes = 0;
		uint64_t blocks = 0;
		int err = CopyWindow(s, (*s.windows)[i], t->buf, &bytes,
				     &blocks);
		s.results[i] = err;
		if (!err) {
			__atomic_add_fetch(&s.progress[kBytesWritten],
					   (int64_t)bytes, __ATOMIC_RELAXED);
			__atomic_add_fetch(&s.progress[kBlocksWritten],
					   (int64_t)blocks, __ATOMIC_RELAXED);
		}
		__atomic_add_fetch(&s.progress[kWindowsDone], 1,
				   __ATOMIC_RELEASE);
	}
	return nullptr;
}

class CopyJob : public Napi::AsyncWorker {
public:
	CopyJob(Napi::Env env, std::string src, std::string dst,
		std::vector<Window> windows, std::vector<Part> parts,
		uint32_t parallel, uint64_t max_io, bool direct,
		bool direct_write, uint64_t write_gap,
		uint64_t snapshot_bytes, Napi::BigInt64Array progress)
		: Napi::AsyncWorker(env, "dattobd.copyWindows"),
		  deferred_(Napi::Promise::Deferred::New(env)),
		  src_(std::move(src)), dst_(std::move(dst)),
		  windows_(std::move(windows)), parts_(std::move(parts)),
		  results_(windows_.size(), 0), parallel_(parallel),
		  max_io_(max_io), direct_(direct),
		  direct_write_(direct_write), write_gap_(write_gap),
		  snapshot_bytes_(snapshot_bytes),
		  progress_(progress.Data()),
		  progress_ref_(Napi::Persistent(progress.As<Napi::Object>()))
	{
	}

	Napi::Promise Promise() { return deferred_.Promise(); }

protected:
	void Execute() override
	{
		if (windows_.empty())
			return;
		if (!OpenFiles())
			return;
		Copy();
		close(src_fd_);
		close(dst_fd_);
		if (dst_direct_fd_ >= 0)
			close(dst_direct_fd_);
	}

	void OnOK() override
	{
		Napi::Env env = Env();
		Napi::Int32Array out =
			Napi::Int32Array::New(env, results_.size());
		if (!results_.empty())
			memcpy(out.Data(), results_.data(),
			       results_.size() * sizeof(int32_t));
		deferred_.Resolve(out);
	}

	void OnError(const Napi::Error &e) override
	{
		if (err_ == 0) {
			deferred_.Reject(e.Value());
			return;
		}
		deferred_.Reject(
			ErrnoError(Env(), err_, err_syscall_, err_path_,
				   err_what_ + " " + err_path_)
				.Value());
	}

private:
	void Fail(int err, const char *syscall, const std::string &path,
		  const char *what)
	{
		err_ = err;
		err_syscall_ = syscall;
		err_path_ = path;
		err_what_ = what;
		SetError(ErrnoName(err));
	}

	/* Open both files (and find out whether O_DIRECT reads work); false on error. */
	bool OpenFiles()
	{
		bool direct = direct_;
		src_fd_ = -1;
		if (direct) {
			src_fd_ = open(src_.c_str(),
				       O_RDONLY | O_DIRECT | O_CLOEXEC);
			if (src_fd_ < 0 && errno == EINVAL)
				direct = false;
		}
		if (!direct)
			src_fd_ = open(src_.c_str(), O_RDONLY | O_CLOEXEC);
		if (src_fd_ < 0) {
			Fail(errno, "open", src_, "cannot open");
			return false;
		}
		if (direct && !ProbeDirect()) {
			close(src_fd_);
			direct = false;
			src_fd_ = open(src_.c_str(), O_RDONLY | O_CLOEXEC);
			if (src_fd_ < 0) {
				Fail(errno, "open", src_, "cannot open");
				return false;
			}
		}
		dst_fd_ = open(dst_.c_str(), O_WRONLY | O_CLOEXEC);
		if (dst_fd_ < 0) {
			Fail(errno, "open", dst_, "cannot open");
			close(src_fd_);
			return false;
		}
		/* Not every file system takes O_DIRECT: then the writes are buffered. */
		dst_direct_fd_ = -1;
		if (direct_write_)
			dst_direct_fd_ = open(dst_.c_str(),
					      O_WRONLY | O_DIRECT | O_CLOEXEC);
		direct_used_ = direct;
		return true;
	}

	/* One aligned block read at the first window: does this file take O_DIRECT reads? */
	bool ProbeDirect()
	{
		void *p = nullptr;
		if (posix_memalign(&p, kBlock, kBlock) != 0)
			return false;
		ssize_t n;
		do
			n = pread(src_fd_, p, kBlock,
				  (off_t)(windows_[0].first * kBlock));
		while (n < 0 && errno == EINTR);
		bool ok = !(n < 0 && errno == EINVAL);
		free(p);
		return ok;
	}

	void Copy()
	{
		Shared s;
		s.windows = &windows_;
		s.parts = &parts_;
		s.results = results_.data();
		s.progress = progress_;
		s.snapshot_bytes = snapshot_bytes_;
		s.write_gap = write_gap_;
		s.src = src_fd_;
		s.dst = dst_fd_;
		s.dst_direct = dst_direct_fd_;
		s.direct = direct_used_;
		s.direct_write_off = false;
		s.next = 0;
		__atomic_store_n(&progress_[kDirect], direct_used_ ? 1 : 0,
				 __ATOMIC_RELEASE);

		size_t n = parallel_ < windows_.size() ? parallel_
						       : windows_.size();
		Thread threads[kMaxParallel];
		size_t have = 0;
		for (; have < n; have++) {
			void *p = nullptr;
			if (posix_memalign(&p, kBlock, (size_t)max_io_) != 0)
				break;
			threads[have] = Thread{ &s, static_cast<unsigned char *>(p),
						pthread_t(), false };
		}
		if (have == 0) {
			Fail(ENOMEM, "posix_memalign", src_,
			     "no copy buffer for");
			return;
		}
		/* This thread copies too (as threads[0]); the others are spawned. */
		for (size_t i = 1; i < have; i++)
			threads[i].started = pthread_create(&threads[i].id,
							    nullptr, CopyThread,
							    &threads[i]) == 0;
		CopyThread(&threads[0]);
		for (size_t i = 1; i < have; i++)
			if (threads[i].started)
				pthread_join(threads[i].id, nullptr);
		for (size_t i = 0; i < have; i++)
			free(threads[i].buf);
	}

	Napi::Promise::Deferred deferred_;
	std::string src_;
	std::string dst_;
	std::vector<Window> windows_;
	std::vector<Part> parts_;
	std::vector<int32_t> results_;
	uint32_t parallel_;
	uint64_t max_io_;
	bool direct_;
	bool direct_used_ = false;
	bool direct_write_;
	uint64_t write_gap_;
	uint64_t snapshot_bytes_;
	int64_t *progress_;
	Napi::ObjectReference progress_ref_;
	int src_fd_ = -1;
	int dst_fd_ = -1;
	int dst_direct_fd_ = -1;
	int err_ = 0;
	const char *err_syscall_ = "";
	std::string err_path_;
	std::string err_what_;
};

std::string PathArg(const Napi::Value &v, const char *name)
{
	if (!v.IsString())
		throw Napi::TypeError::New(v.Env(), std::string(name) +
							    " must be a string");
	std::string s = v.As<Napi::String>().Utf8Value();
	if (s.empty() || s.find('\0') != std::string::npos)
		throw Napi::TypeError::New(
			v.Env(), std::string(name) +
					 " must be a non-empty path without NUL bytes");
	return s;
}

uint64_t IntOption(const Napi::Object &o, const char *name, double min,
		   double max)
{
	Napi::Value v = o.Get(name);
	if (!v.IsNumber())
		throw Napi::TypeError::New(o.Env(), std::string("opts.") +
							    name +
							    " must be a number");
	double d = v.As<Napi::Number>().DoubleValue();
	if (!(d >= min && d <= max) || d != (double)(uint64_t)d)
		throw Napi::RangeError::New(
			o.Env(), std::string("opts.") + name +
					 " must be an integer between " +
					 std::to_string((uint64_t)min) +
					 " and " + std::to_string((uint64_t)max));
	return (uint64_t)d;
}

/* The plan as windows and parts, checked against the copy's limits; throws RangeError. */
void ParsePlan(Napi::Env env, const double *plan, size_t len,
	       uint64_t max_io, uint64_t snapshot_bytes,
	       std::vector<Window> &windows, std::vector<Part> &parts)
{
	const uint64_t max_blocks = max_io / kBlock;
	const uint64_t end_block = (snapshot_bytes + kBlock - 1) / kBlock;
	size_t i = 0;
	auto next = [&](const char *what) -> uint64_t {
		if (i >= len)
			throw Napi::RangeError::New(
				env, "plan: truncated (window " +
					     std::to_string(windows.size()) +
					     ", " + what + ")");
		double d = plan[i++];
		if (!(d >= 0 && d <= kMaxSafe) || d != (double)(uint64_t)d)
			throw Napi::RangeError::New(
				env, "plan: window " +
					     std::to_string(windows.size()) +
					     ": " + what +
					     " is not a non-negative integer");
		return (uint64_t)d;
	};
	auto bad = [&](const std::string &why) {
		return Napi::RangeError::New(
			env, "plan: window " + std::to_string(windows.size()) +
				     ": " + why);
	};
	while (i < len) {
		Window w;
		w.first = next("first");
		w.count = next("count");
		w.nparts = next("nparts");
		w.part0 = parts.size();
		if (w.count == 0 || w.count > max_blocks)
			throw bad("count must be between 1 and maxIo / 4096");
		if (w.first >= end_block || w.count > end_block - w.first)
			throw bad("extends past snapshotBytes");
		if (w.nparts == 0 || w.nparts > w.count)
			throw bad("nparts must be between 1 and count");
		for (size_t k = 0; k < w.nparts; k++) {
			Part p;
			p.first = next("part first");
			p.count = next("part count");
			if (p.count == 0 || p.first < w.first ||
			    p.first - w.first > w.count ||
			    p.count > w.count - (p.first - w.first))
				throw bad("a part lies outside its window");
			parts.push_back(p);
		}
		windows.push_back(w);
	}
}

Napi::Value CopyWindows(const Napi::CallbackInfo &info)
{
	Napi::Env env = info.Env();
	std::string src = PathArg(info[0], "src");
	std::string dst = PathArg(info[1], "dst");
	if (!info[2].IsTypedArray() ||
	    info[2].As<Napi::TypedArray>().TypedArrayType() !=
		    napi_float64_array)
		throw Napi::TypeError::New(env, "plan must be a Float64Array");
	if (!info[3].IsObject())
		throw Napi::TypeError::New(env, "opts must be an object");
	if (!info[4].IsTypedArray() ||
	    info[4].As<Napi::TypedArray>().TypedArrayType() !=
		    napi_bigint64_array)
		throw Napi::TypeError::New(env,
					   "progress must be a BigInt64Array");
	Napi::Float64Array plan = info[2].As<Napi::Float64Array>();
	Napi::Object opts = info[3].As<Napi::Object>();
	Napi::BigInt64Array progress = info[4].As<Napi::BigInt64Array>();
	if (progress.ElementLength() < kProgressSlots)
		throw Napi::RangeError::New(
			env, "progress must have at least 4 entries");

	uint32_t parallel =
		(uint32_t)IntOption(opts, "parallel", 1, kMaxParallel);
	uint64_t max_io =
		IntOption(opts, "maxIo", kBlock, (double)kMaxIoLimit);
	if (max_io % kBlock)
		throw Napi::RangeError::New(
			env, "opts.maxIo must be a multiple of 4096");
	uint64_t snapshot_bytes =
		IntOption(opts, "snapshotBytes", 1, kMaxSafe);
	Napi::Value d = opts.Get("direct");
	if (!d.IsBoolean())
		throw Napi::TypeError::New(env,
					   "opts.direct must be a boolean");
	Napi::Value dw = opts.Get("directWrite");
	if (!dw.IsUndefined() && !dw.IsBoolean())
		throw Napi::TypeError::New(
			env, "opts.directWrite must be a boolean");
	bool direct_write = dw.IsBoolean() && dw.As<Napi::Boolean>().Value();
	uint64_t write_gap = 0;
	if (!opts.Get("writeGap").IsUndefined())
		write_gap = IntOption(opts, "writeGap", 0, kMaxSafe);

	std::vector<Window> windows;
	std::vector<Part> parts;
	ParsePlan(env, plan.Data(), plan.ElementLength(), max_io,
		  snapshot_bytes, windows, parts);

	CopyJob *job = new CopyJob(env, std::move(src), std::move(dst),
				   std::move(windows), std::move(parts),
				   parallel, max_io,
				   d.As<Napi::Boolean>().Value(),
				   direct_write, write_gap, snapshot_bytes,
				   progress);
	Napi::Promise promise = job->Promise();
	job->Queue();
	return promise;
}

} // namespace

void InitCopyEngine(Napi::Env env, Napi::Object exports)
{
	exports.Set("copyWindows", Napi::Function::New(env, CopyWindows));
	Napi::Object slots = Napi::Object::New(env);
	slots.Set("bytesWritten", Napi::Number::New(env, kBytesWritten));
	slots.Set("windowsDone", Napi::Number::New(env, kWindowsDone));
	slots.Set("blocksWritten", Napi::Number::New(env, kBlocksWritten));
	slots.Set("direct", Napi::Number::New(env, kDirect));
	slots.Set("length", Napi::Number::New(env, kProgressSlots));
	exports.Set("COPY_PROGRESS", slots);
}
