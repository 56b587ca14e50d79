// SPDX-License-Identifier: GPL-2.0-only
/*
 * Mount and unmount detection (SPEC 3.2, 3.5, 5.5) with ftrace IPMODIFY
 * redirects by function name (ftrace_set_filter), livepatch-style: the
 * callback sends every call that does not come from this module to our
 * replacement, which calls the original.
 *
 * Only system call entry points are hooked.  Their addresses are taken
 * (the system call table), so on kernels built with IBT they keep their
 * ENDBR64 and an indirect call to them is valid.  Internal functions such
 * as path_umount/path_mount are never address-taken: the kernel seals
 * their ENDBR at boot, and an indirect call to one is a "Missing ENDBR"
 * BUG on IBT hardware.  The callback checks the instruction in front of
 * the ftrace site and redirects only when the original can be called
 * back (ENDBR64 there, or no IBT in this kernel); otherwise the call goes
 * on unhooked and the hook says so once.
 *
 *   __x64_sys_umount     umount(2)/umount2(2)
 *   __x64_sys_mount      mount(2): new mounts and remounts (ro and rw)
 *   __x64_sys_move_mount the new mount API attaching a mount (fsmount +
 *                        move_mount)
 *   __x64_sys_fspick     the new mount API picking a mount to reconfigure:
 *                        its path is remembered (as text, no reference)
 *   __x64_sys_fsconfig   FSCONFIG_CMD_RECONFIGURE: remount-ro and
 *                        remount-rw of the superblock with the new API
 *   __x64_sys_mount_setattr  a mount made writable (util-linux clears
 *                        the mount's read-only flag after the superblock's)
 *
 * Devices are made dormant before an unmount or remount-ro only for a
 * caller that holds CAP_SYS_ADMIN over the filesystem (what the kernel
 * itself requires of them): an unprivileged caller's attempt fails in the
 * original and must not change any device.
 *
 * The replacements run with no VFS lock held, so they may take
 * dbd_ctl_mutex and freeze the filesystem.  32-bit (ia32) mount calls are
 * not hooked: an unmount through them finds the COW file open (EBUSY),
 * a remount-ro finds it open for writing (EBUSY).
 */
#include <linux/module.h>
#include <linux/ftrace.h>
#include <linux/fs.h>
#include <linux/mount.h>
#include <linux/namei.h>
#include <linux/slab.h>
#include <linux/ptrace.h>
#include <linux/uaccess.h>
#include <linux/file.h>
#include <linux/fs_context.h>
#include <linux/fs_struct.h>
#include <linux/dcache.h>
#include <linux/spinlock.h>
#include <linux/capability.h>
#include <linux/user_namespace.h>
#include <uapi/linux/mount.h>
#include "dbd.h"

#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef FSPICK_SYMLINK_NOFOLLOW
#define FSPICK_SYMLINK_NOFOLLOW 0x00000002
#define FSPICK_NO_AUTOMOUNT 0x00000004
#define FSPICK_EMPTY_PATH 0x00000008
#endif

/* ENDBR64 (f3 0f 1e fa) as a little-endian word, and its length */
#define DBD_ENDBR64 0xfa1e0ff3U
#define DBD_ENDBR_LEN 4

struct dbd_hook {
	const char *name;
	void *replacement;
	unsigned long orig;	/* callable address of the original, or 0 */
	bool registered;
	bool refused;		/* the original cannot be called back */
	struct ftrace_ops ops;
};

/*
 * The address to call the original at, given its ftrace site, or 0 if it
 * must not be called indirectly.  With IBT the site follows the entry
 * instruction: ENDBR64 for a function that may be called indirectly, a
 * 4-byte NOP for a sealed one.  Without IBT the site is the entry.
 */
static unsigned long notrace dbd_hook_callable(unsigned long ip)
{
	u32 insn;

	if (!IS_ENABLED(CONFIG_X86_KERNEL_IBT))
		return ip;
	if (copy_from_kernel_nofault(&insn, (void *)(ip - DBD_ENDBR_LEN),
				     sizeof(insn)))
		return 0;
	return insn == DBD_ENDBR64 ? ip - DBD_ENDBR_LEN : 0;
}

static void notrace dbd_hook_cb(unsigned long ip, unsigned long parent_ip,
				struct ftrace_ops *op,
				struct ftrace_regs *fregs)
{
	struct dbd_hook *h = container_of(op, struct dbd_hook, ops);
	unsigned long orig;

	if (within_module(parent_ip, THIS_MODULE))
		return;
	orig = dbd_hook_callable(ip);
	if (!orig) {
		/* the call goes on unhooked: never redirect what we cannot call */
		if (!READ_ONCE(h->refused)) {
			WRITE_ONCE(h->refused, true);
			dbd_warn("%s has no ENDBR64 and is not hooked: mount detection through it is off",
				 h->name);
		}
		return;
	}
	/* the replacement runs module code: pin the module until it returns */
	if (!try_module_get(THIS_MODULE))
		return;
	WRITE_ONCE(h->orig, orig);
#if DBD_NEW_BLOCK_API
	ftrace_regs_set_instruction_pointer(fregs,
					    (unsigned long)h->replacement);
#else
	ftrace_instruction_pointer_set(fregs, (unsigned long)h->replacement);
#endif
}

static long dbd_sys_umount(const struct pt_regs *regs);
static long dbd_sys_mount(const struct pt_regs *regs);
static long dbd_sys_move_mount(const struct pt_regs *regs);
static long dbd_sys_fspick(const struct pt_regs *regs);
static long dbd_sys_fsconfig(const struct pt_regs *regs);
static long dbd_sys_mount_setattr(const struct pt_regs *regs);

enum { H_UMOUNT, H_MOUNT, H_MOVE_MOUNT, H_FSPICK, H_FSCONFIG, H_SETATTR,
	H_COUNT };

#define DBD_HOOK_FLAGS (FTRACE_OPS_FL_IPMODIFY | FTRACE_OPS_FL_PERMANENT)

static struct dbd_hook dbd_hooks[H_COUNT] = {
	[H_UMOUNT] = { .name = "__x64_sys_umount",
		       .replacement = dbd_sys_umount },
	[H_MOUNT] = { .name = "__x64_sys_mount",
		      .replacement = dbd_sys_mount },
	[H_MOVE_MOUNT] = { .name = "__x64_sys_move_mount",
			   .replacement = dbd_sys_move_mount },
	[H_FSPICK] = { .name = "__x64_sys_fspick",
		       .replacement = dbd_sys_fspick },
	[H_FSCONFIG] = { .name = "__x64_sys_fsconfig",
			 .replacement = dbd_sys_fsconfig },
	[H_SETATTR] = { .name = "__x64_sys_mount_setattr",
			.replacement = dbd_sys_mount_setattr },
};

/* ------------------------------------------------------------ handlers */

typedef long (*syscall_fn)(const struct pt_regs *regs);

static long dbd_hook_call(struct dbd_hook *h, const struct pt_regs *regs)
{
	syscall_fn orig = (syscall_fn)READ_ONCE(h->orig);

	return orig(regs);
}

/* may this caller unmount or remount-ro the filesystem sb? */
static bool dbd_may_suspend(const struct super_block *sb)
{
	return ns_capable_noaudit(sb->s_user_ns, CAP_SYS_ADMIN);
}

static long dbd_sys_umount(const struct pt_regs *regs)
{
	/* umount2(name, flags) */
	const char __user *name = (const char __user *)regs->di;
	int flags = (int)regs->si;
	unsigned long dormant[BITS_TO_LONGS(DBD_HARD_MAX_DEVICES)] = { 0 };
	unsigned int lookup = LOOKUP_MOUNTPOINT;
	char *mnt_path = NULL;
	struct path p;
	long ret;

	if (!(flags & UMOUNT_NOFOLLOW))
		lookup |= LOOKUP_FOLLOW;
	if (!(flags & ~(MNT_FORCE | MNT_DETACH | MNT_EXPIRE |
			UMOUNT_NOFOLLOW)) &&
	    !user_path_at(AT_FDCWD, name, lookup, &p)) {
		if (dbd_may_suspend(p.mnt->mnt_sb))
			mnt_path = dbd_mount_pre_umount(&p, dormant);
		path_put(&p);
	}
	ret = dbd_hook_call(&dbd_hooks[H_UMOUNT], regs);
	dbd_mount_post_umount(mnt_path, dormant, (int)ret);
	kfree(mnt_path);
	module_put(THIS_MODULE);
	return ret;
}

static long dbd_sys_mount(const struct pt_regs *regs)
{
	/* mount(dev_name, dir_name, type, flags, data) */
	const char __user *dir = (const char __user *)regs->si;
	unsigned long flags = regs->r10;
	unsigned long dormant[BITS_TO_LONGS(DBD_HARD_MAX_DEVICES)] = { 0 };
	unsigned long f = flags;
	char *mnt_path = NULL;
	struct path p;
	long ret;

	if ((f & MS_MGC_MSK) == MS_MGC_VAL)
		f &= ~MS_MGC_MSK;
	if (f & (MS_BIND | MS_SHARED | MS_PRIVATE | MS_SLAVE |
		 MS_UNBINDABLE | MS_MOVE)) {
		ret = dbd_hook_call(&dbd_hooks[H_MOUNT], regs);
	} else if ((f & MS_REMOUNT) && (f & MS_RDONLY)) {
		/* remount-ro counts as an unmount */
		if (!user_path_at(AT_FDCWD, dir, LOOKUP_FOLLOW, &p)) {
			if (dbd_may_suspend(p.mnt->mnt_sb))
				mnt_path = dbd_mount_pre_umount(&p, dormant);
			path_put(&p);
		}
		ret = dbd_hook_call(&dbd_hooks[H_MOUNT], regs);
		dbd_mount_post_umount(mnt_path, dormant, (int)ret);
		kfree(mnt_path);
	} else {
		dbd_mount_begin();
		ret = dbd_hook_call(&dbd_hooks[H_MOUNT], regs);
		/* the path now leads to the new (or remounted) mount's root */
		if (!ret && !(f & MS_RDONLY) &&
		    !user_path_at(AT_FDCWD, dir, LOOKUP_FOLLOW, &p)) {
			dbd_mount_activate_path(&p);
			path_put(&p);
		}
		dbd_mount_end();
	}
	module_put(THIS_MODULE);
	return ret;
}

/* after a successful mount operation: the user's path, as a rw mount */
static void dbd_activate_user_path(int dfd, const char __user *upath,
				   unsigned int lookup)
{
	struct path p;

	/* activates only what is not active, on a writable mount root */
	if (!user_path_at(dfd, upath, lookup, &p)) {
		dbd_mount_activate_path(&p);
		path_put(&p);
	}
}

static long dbd_sys_move_mount(const struct pt_regs *regs)
{
	/* move_mount(from_dfd, from_path, to_dfd, to_path, flags) */
	int to_dfd = (int)regs->dx;
	const char __user *to_path = (const char __user *)regs->r10;
	unsigned int mflags = (unsigned int)regs->r8;
	long ret;

	dbd_mount_begin();
	ret = dbd_hook_call(&dbd_hooks[H_MOVE_MOUNT], regs);
	if (!ret)
		dbd_activate_user_path(to_dfd, to_path, LOOKUP_FOLLOW |
				       ((mflags & MOVE_MOUNT_T_EMPTY_PATH) ?
					LOOKUP_EMPTY : 0));
	dbd_mount_end();
	module_put(THIS_MODULE);
	return ret;
}

/*
 * fspick() hands out a reconfiguration context for a mount; the later
 * fsconfig(FSCONFIG_CMD_RECONFIGURE) only knows the superblock.  The path
 * given to fspick is remembered as text, keyed by the context, so that
 * the reconfiguration can find the mount again (by lookup, and only if it
 * is still a mount root of that superblock).  No reference is held: a
 * context that is never used just ages out of the small table.
 */
#define DBD_PICKS 8

struct dbd_pick {
	const void *fc;
	char *path;
};

static struct dbd_pick dbd_picks[DBD_PICKS];
static unsigned int dbd_pick_next;
static DEFINE_SPINLOCK(dbd_pick_lock);

static bool dbd_is_fscontext(struct file *f)
{
	return !strcmp(file_dentry(f)->d_name.name, "[fscontext]");
}

static void dbd_pick_remember(const void *fc, char *path)
{
	char *old;

	spin_lock(&dbd_pick_lock);
	old = dbd_picks[dbd_pick_next].path;
	dbd_picks[dbd_pick_next].fc = fc;
	dbd_picks[dbd_pick_next].path = path;
	dbd_pick_next = (dbd_pick_next + 1) % DBD_PICKS;
	spin_unlock(&dbd_pick_lock);
	kfree(old);
}

/* the remembered path of a context (caller frees), or NULL */
static char *dbd_pick_take(const void *fc)
{
	char *path = NULL;
	unsigned int i;

	spin_lock(&dbd_pick_lock);
	for (i = 0; i < DBD_PICKS; i++) {
		if (dbd_picks[i].fc == fc && dbd_picks[i].path) {
			path = dbd_picks[i].path;
			dbd_picks[i].path = NULL;
			dbd_picks[i].fc = NULL;
			break;
		}
	}
	spin_unlock(&dbd_pick_lock);
	return path;
}

static void dbd_picks_free(void)
{
	unsigned int i;

	for (i = 0; i < DBD_PICKS; i++) {
		kfree(dbd_picks[i].path);
		dbd_picks[i].path = NULL;
	}
}

static long dbd_sys_fspick(const struct pt_regs *regs)
{
	/* fspick(dfd, path, flags) */
	int dfd = (int)regs->di;
	const char __user *upath = (const char __user *)regs->si;
	unsigned int flags = (unsigned int)regs->dx;
	unsigned int lookup = 0;
	char *buf, *p, *copy = NULL;
	struct file *f;
	struct path path;
	long fd;

	fd = dbd_hook_call(&dbd_hooks[H_FSPICK], regs);
	if (fd < 0)
		goto out;
	if (!(flags & FSPICK_SYMLINK_NOFOLLOW))
		lookup |= LOOKUP_FOLLOW;
	if (!(flags & FSPICK_NO_AUTOMOUNT))
		lookup |= LOOKUP_AUTOMOUNT;
	if (flags & FSPICK_EMPTY_PATH)
		lookup |= LOOKUP_EMPTY;
	if (user_path_at(dfd, upath, lookup, &path))
		goto out;
	buf = kmalloc(PATH_MAX_DATTO, GFP_KERNEL);
	if (buf) {
		p = d_path(&path, buf, PATH_MAX_DATTO);
		if (!IS_ERR(p))
			copy = kstrdup(p, GFP_KERNEL);
		kfree(buf);
	}
	path_put(&path);
	f = fget(fd);
	if (f && copy && dbd_is_fscontext(f)) {
		dbd_pick_remember(f->private_data, copy);
		copy = NULL;
	}
	if (f)
		fput(f);
	kfree(copy);
out:
	module_put(THIS_MODULE);
	return fd;
}

/* a mount root of sb at the remembered path, or of the caller's root */
static bool dbd_pick_path(const char *text, struct super_block *sb,
			  struct path *out)
{
	if (text && !kern_path(text, LOOKUP_FOLLOW, out)) {
		if (out->mnt->mnt_sb == sb &&
		    out->dentry == out->mnt->mnt_root)
			return true;
		path_put(out);
	}
	get_fs_root(current->fs, out);
	if (out->mnt->mnt_sb == sb && out->dentry == out->mnt->mnt_root)
		return true;
	path_put(out);
	return false;
}

static long dbd_sys_fsconfig(const struct pt_regs *regs)
{
	/* fsconfig(fd, cmd, key, value, aux) */
	int fd = (int)regs->di;
	unsigned int cmd = (unsigned int)regs->si;
	unsigned long dormant[BITS_TO_LONGS(DBD_HARD_MAX_DEVICES)] = { 0 };
	struct super_block *sb = NULL;
	struct fs_context *fc;
	bool to_ro = false, to_rw = false;
	char *text = NULL;
	struct file *f;
	struct path p;
	long ret;

	f = cmd == FSCONFIG_CMD_RECONFIGURE ? fget(fd) : NULL;
	if (f && dbd_is_fscontext(f)) {
		fc = f->private_data;
		if (fc->purpose == FS_CONTEXT_FOR_RECONFIGURE && fc->root &&
		    (fc->sb_flags_mask & SB_RDONLY)) {
			sb = fc->root->d_sb;
			to_ro = (fc->sb_flags & SB_RDONLY) && !sb_rdonly(sb);
			to_rw = !(fc->sb_flags & SB_RDONLY) && sb_rdonly(sb);
			text = dbd_pick_take(fc);
		}
	}
	if (to_ro && dbd_may_suspend(sb)) {
		/* remount-ro counts as an unmount of every mount of sb */
		dbd_mount_pre_umount_sb(sb, dormant);
		ret = dbd_hook_call(&dbd_hooks[H_FSCONFIG], regs);
		dbd_mount_post_umount(text, dormant, ret);
	} else {
		dbd_mount_begin();
		ret = dbd_hook_call(&dbd_hooks[H_FSCONFIG], regs);
		if (!ret && to_rw && dbd_pick_path(text, sb, &p)) {
			dbd_mount_activate_path(&p);
			path_put(&p);
		}
		dbd_mount_end();
	}
	kfree(text);
	if (f)
		fput(f);
	module_put(THIS_MODULE);
	return ret;
}

static long dbd_sys_mount_setattr(const struct pt_regs *regs)
{
	/* mount_setattr(dfd, path, flags, uattr, usize) */
	int dfd = (int)regs->di;
	const char __user *upath = (const char __user *)regs->si;
	unsigned int flags = (unsigned int)regs->dx;
	unsigned int lookup = 0;
	long ret;

	ret = dbd_hook_call(&dbd_hooks[H_SETATTR], regs);
	if (!ret) {
		if (!(flags & AT_SYMLINK_NOFOLLOW))
			lookup |= LOOKUP_FOLLOW;
		if (!(flags & AT_NO_AUTOMOUNT))
			lookup |= LOOKUP_AUTOMOUNT;
		if (flags & AT_EMPTY_PATH)
			lookup |= LOOKUP_EMPTY;
		dbd_activate_user_path(dfd, upath, lookup);
	}
	module_put(THIS_MODULE);
	return ret;
}

/* ------------------------------------------------------------ setup */

int dbd_hooks_init(void)
{
	int i, ret;

	for (i = 0; i < H_COUNT; i++) {
		struct dbd_hook *h = &dbd_hooks[i];

		h->ops.func = dbd_hook_cb;
		h->ops.flags = DBD_HOOK_FLAGS;
#ifndef CONFIG_HAVE_DYNAMIC_FTRACE_WITH_ARGS
		h->ops.flags |= FTRACE_OPS_FL_SAVE_REGS;
#endif
		ret = ftrace_set_filter(&h->ops, (unsigned char *)h->name,
					strlen(h->name), 0);
		if (!ret)
			ret = register_ftrace_function(&h->ops);
		if (ret) {
			dbd_warn("cannot hook %s, mount detection incomplete: %d",
				 h->name, ret);
			continue;
		}
		h->registered = true;
	}
	return 0;
}

void dbd_hooks_exit(void)
{
	int i;

	for (i = 0; i < H_COUNT; i++) {
		struct dbd_hook *h = &dbd_hooks[i];

		if (!h->registered)
			continue;
		unregister_ftrace_function(&h->ops);
		ftrace_free_filter(&h->ops);
		h->registered = false;
	}
	dbd_picks_free();
}
