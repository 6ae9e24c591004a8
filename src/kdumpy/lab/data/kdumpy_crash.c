// SPDX-License-Identifier: GPL-2.0
/*
 * kdumpy_crash: a lab-only test module that crashes the kernel in a chosen way at load time.
 *
 *   insmod kdumpy_crash.ko how=null   NULL pointer dereference (oops; panics with panic_on_oops)
 *   insmod kdumpy_crash.ko how=bug    BUG() (oops "kernel BUG at"; panics with panic_on_oops)
 *   insmod kdumpy_crash.ko how=warn   WARN() (panics with panic_on_warn)
 *
 * The crash happens in a named function so backtraces have a known frame to look for.
 */
#include <linux/bug.h>
#include <linux/init.h>
#include <linux/module.h>

static char *how = "null";
module_param(how, charp, 0444);
MODULE_PARM_DESC(how, "null, bug or warn");

struct kdumpy_victim {
	long pad[4];
	long value;
};

static noinline int kdumpy_crash_null(struct kdumpy_victim *victim)
{
	return (int)READ_ONCE(victim->value);
}

static noinline void kdumpy_crash_bug(void)
{
	BUG();
}

static noinline void kdumpy_crash_warn(void)
{
	WARN(1, "kdumpy_crash: warning on purpose\n");
}

static int __init kdumpy_crash_init(void)
{
	pr_emerg("kdumpy_crash: crashing by %s\n", how);
	if (!strcmp(how, "null"))
		return kdumpy_crash_null(NULL);
	if (!strcmp(how, "bug"))
		kdumpy_crash_bug();
	else if (!strcmp(how, "warn"))
		kdumpy_crash_warn();
	return -EINVAL;
}
module_init(kdumpy_crash_init);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kdumpy lab: crash the kernel on purpose");
