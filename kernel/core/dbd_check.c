// SPDX-License-Identifier: GPL-2.0-only
/*
 * ioctl argument checks (range -> existence -> busy -> failed -> state)
 * and the state transition table.
 */
#include "dbd_core.h"

#define ST_SNAP DBD_STATE_SNAPSHOT
#define ST_ACTIVE DBD_STATE_ACTIVE
#define ST_UNVERIFIED DBD_STATE_UNVERIFIED

unsigned int dbd_max_devices(unsigned int param)
{
	if (!param)
		return DBD_DEFAULT_MAX_DEVICES;
	if (param > DBD_HARD_MAX_DEVICES)
		return DBD_HARD_MAX_DEVICES;
	return param;
}

static bool is_active_snapshot(unsigned long state)
{
	return (state & (ST_SNAP | ST_ACTIVE | ST_UNVERIFIED)) ==
	       (ST_SNAP | ST_ACTIVE);
}

static bool is_active_incremental(unsigned long state)
{
	return (state & (ST_SNAP | ST_ACTIVE | ST_UNVERIFIED)) == ST_ACTIVE;
}

int dbd_check_cmd(enum dbd_cmd cmd, unsigned int minor,
		  unsigned int max_devices, const struct dbd_minor_view *v)
{
	if (cmd == DBD_CMD_GET_FREE)
		return 0;
	if (minor >= max_devices)
		return -EINVAL;

	switch (cmd) {
	case DBD_CMD_SETUP_SNAP:
	case DBD_CMD_RELOAD_SNAP:
	case DBD_CMD_RELOAD_INC:
		return v->exists ? -EBUSY : 0;
	case DBD_CMD_INFO:
		return v->exists ? 0 : -ENOENT;
	case DBD_CMD_DESTROY:
		if (!v->exists)
			return -ENOENT;
		return v->busy ? -EBUSY : 0;
	case DBD_CMD_RECONFIGURE:
	case DBD_CMD_TRANSITION_INC:
	case DBD_CMD_TRANSITION_SNAP:
		if (!v->exists)
			return -ENOENT;
		if (v->busy)
			return -EBUSY;
		if (v->fail_code)
			return -EINVAL;
		if (cmd == DBD_CMD_TRANSITION_INC &&
		    !is_active_snapshot(v->state))
			return -EINVAL;
		if (cmd == DBD_CMD_TRANSITION_SNAP &&
		    !is_active_incremental(v->state))
			return -EINVAL;
		return 0;
	case DBD_CMD_EXPAND_COW_FILE:
	case DBD_CMD_RECONFIGURE_AUTO_EXPAND:
		/* busy (snapshot mounted) is allowed */
		if (!v->exists)
			return -ENOENT;
		if (v->fail_code)
			return -EINVAL;
		return is_active_snapshot(v->state) ? 0 : -EINVAL;
	default:
		return -EINVAL;
	}
}

int dbd_state_next(unsigned long state, enum dbd_event ev,
		   unsigned long *next)
{
	unsigned long s = state & (ST_SNAP | ST_ACTIVE | ST_UNVERIFIED);

	switch (ev) {
	case DBD_EV_SETUP:
		*next = ST_SNAP | ST_ACTIVE;
		return 0;
	case DBD_EV_RELOAD_SNAP:
		*next = ST_UNVERIFIED | ST_SNAP;
		return 0;
	case DBD_EV_RELOAD_INC:
		*next = ST_UNVERIFIED;
		return 0;
	case DBD_EV_TRANSITION_INC:
		if (s != (ST_SNAP | ST_ACTIVE))
			return -EINVAL;
		*next = ST_ACTIVE;
		return 0;
	case DBD_EV_TRANSITION_SNAP:
		if (s != ST_ACTIVE)
			return -EINVAL;
		*next = ST_SNAP | ST_ACTIVE;
		return 0;
	case DBD_EV_MOUNT_RW:
		/* unverified -> active, dormant -> active */
		if (s & ST_ACTIVE)
			return -EINVAL;
		*next = (s & ST_SNAP) | ST_ACTIVE;
		return 0;
	case DBD_EV_UMOUNT:
		if ((s & ST_UNVERIFIED) || !(s & ST_ACTIVE))
			return -EINVAL;
		*next = s & ST_SNAP;
		return 0;
	case DBD_EV_UMOUNT_FAILED:
		/* only a dormant device is re-activated */
		if (s & (ST_UNVERIFIED | ST_ACTIVE))
			return -EINVAL;
		*next = s | ST_ACTIVE;
		return 0;
	}
	return -EINVAL;
}
