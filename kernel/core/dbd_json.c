// SPDX-License-Identifier: GPL-2.0-only
/*
 * /proc/datto-info text: JSON string escaping and the per-device object,
 * tab-indented, same fields and order as dattobd 0.12.1, but valid JSON.
 */
#include "dbd_core.h"

#define DBD_VERSION_STR "0.12.1"

/* Length of the valid UTF-8 sequence at s, or 0 if it is not valid. */
static size_t utf8_len(const unsigned char *s)
{
	size_t n, i;
	u32 cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	for (i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* overlong, surrogates, beyond U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return n;
}

struct out {
	char *buf;
	size_t size;
	size_t len;
};

static void out_char(struct out *o, char c)
{
	if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

static void out_str(struct out *o, const char *s)
{
	while (*s)
		out_char(o, *s++);
}

static void out_terminate(struct out *o)
{
	if (!o->size)
		return;
	o->buf[o->len < o->size ? o->len : o->size - 1] = '\0';
}

static void out_escape(struct out *o, const char *src)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)src;
	size_t n, i;

	while (*s) {
		unsigned char c = *s;

		switch (c) {
		case '"':
			out_str(o, "\\\"");
			s++;
			continue;
		case '\\':
			out_str(o, "\\\\");
			s++;
			continue;
		case '\b':
			out_str(o, "\\b");
			s++;
			continue;
		case '\f':
			out_str(o, "\\f");
			s++;
			continue;
		case '\n':
			out_str(o, "\\n");
			s++;
			continue;
		case '\r':
			out_str(o, "\\r");
			s++;
			continue;
		case '\t':
			out_str(o, "\\t");
			s++;
			continue;
		}
		n = c < 0x20 ? 0 : utf8_len(s);
		if (!n) {
			out_str(o, "\\u00");
			out_char(o, hex[c >> 4]);
			out_char(o, hex[c & 0xf]);
			s++;
			continue;
		}
		for (i = 0; i < n; i++)
			out_char(o, (char)s[i]);
		s += n;
	}
}

size_t dbd_json_escape(char *dst, size_t size, const char *src)
{
	struct out o = { dst, size, 0 };

	out_escape(&o, src);
	out_terminate(&o);
	return o.len;
}

static void out_fmt_u64(struct out *o, const char *key, u64 v, bool comma)
{
	char num[24];
	int i = sizeof(num) - 1;

	num[i] = '\0';
	do {
		num[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	out_str(o, "\t\t\t\"");
	out_str(o, key);
	out_str(o, "\": ");
	out_str(o, num + i);
	out_str(o, comma ? ",\n" : "\n");
}

static void out_fmt_s64(struct out *o, const char *key, long long v,
			bool comma)
{
	if (v < 0) {
		char tmp[24];
		unsigned long long m = (unsigned long long)(-(v + 1)) + 1;
		int i = sizeof(tmp) - 1;

		tmp[i] = '\0';
		do {
			tmp[--i] = (char)('0' + m % 10);
			m /= 10;
		} while (m);
		tmp[--i] = '-';
		out_str(o, "\t\t\t\"");
		out_str(o, key);
		out_str(o, "\": ");
		out_str(o, tmp + i);
		out_str(o, comma ? ",\n" : "\n");
		return;
	}
	out_fmt_u64(o, key, (u64)v, comma);
}

static void out_fmt_string(struct out *o, const char *key, const char *v)
{
	out_str(o, "\t\t\t\"");
	out_str(o, key);
	out_str(o, "\": \"");
	out_escape(o, v ? v : "");
	out_str(o, "\",\n");
}

size_t dbd_proc_head(char *buf, size_t size)
{
	struct out o = { buf, size, 0 };

	out_str(&o, "{\n\t\"version\": \"" DBD_VERSION_STR "\",\n");
	out_str(&o, "\t\"devices\": [\n");
	out_terminate(&o);
	return o.len;
}

size_t dbd_proc_tail(char *buf, size_t size)
{
	struct out o = { buf, size, 0 };

	out_str(&o, "\n\t]\n}\n");
	out_terminate(&o);
	return o.len;
}

size_t dbd_proc_dev(char *buf, size_t size, const struct dbd_proc_dev *d,
		    bool first)
{
	static const char hex[] = "0123456789abcdef";
	struct out o = { buf, size, 0 };
	int i;

	if (!first)
		out_str(&o, ",\n");
	out_str(&o, "\t\t{\n");
	out_fmt_u64(&o, "minor", d->minor, true);
	out_fmt_string(&o, "cow_file", d->cow_file);
	out_fmt_string(&o, "block_device", d->block_device);
	out_fmt_u64(&o, "max_cache", d->max_cache, true);
	if (!d->unverified) {
		out_fmt_u64(&o, "fallocate", d->fallocate_bytes, true);
		if (d->has_cow) {
			out_fmt_u64(&o, "cow_size_current",
				    d->cow_size_current, true);
			out_fmt_u64(&o, "seq_id", d->seq_id, true);
			out_str(&o, "\t\t\t\"uuid\": \"");
			for (i = 0; i < 16; i++) {
				out_char(&o, hex[d->uuid[i] >> 4]);
				out_char(&o, hex[d->uuid[i] & 0xf]);
			}
			out_str(&o, "\",\n");
			if (d->version > 0) {
				out_fmt_u64(&o, "version", d->version, true);
				out_fmt_u64(&o, "nr_changed_blocks",
					    d->nr_changed_blocks, true);
			}
		}
	}
	if (d->has_auto_expand) {
		out_str(&o, "\t\t\t\"auto_expand\": {\n\t");
		out_fmt_u64(&o, "step_size_mib", d->step_size_mib, true);
		out_char(&o, '\t');
		out_fmt_u64(&o, "reserved_space_mib", d->reserved_space_mib,
			    false);
		out_str(&o, "\t\t\t},\n");
	}
	if (d->error)
		out_fmt_s64(&o, "error", d->error, true);
	out_fmt_u64(&o, "state", d->state, false);
	out_str(&o, "\t\t}");
	out_terminate(&o);
	return o.len;
}
