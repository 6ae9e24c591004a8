"""The kernel types of the synthetic kernel: the members kdumpy's helpers read, with
the names and C types of Linux 6.x (x86_64), and little else.  Offsets differ from a
real kernel's, which is the point: the helpers must go by BTF, not by fixed offsets."""

from __future__ import annotations

KERNEL_TYPES = """
typedef unsigned char u8; typedef unsigned short u16; typedef unsigned int u32;
typedef unsigned long long u64; typedef int s32; typedef long long s64;
typedef int pid_t; typedef unsigned short umode_t; typedef unsigned int gfp_t;
typedef _Bool bool;
typedef struct { int counter; } atomic_t;
typedef struct { s64 counter; } atomic_long_t;
typedef struct { atomic_t refs; } refcount_t;
typedef struct { unsigned int val; } spinlock_t;

struct list_head { struct list_head *next; struct list_head *prev; };
struct hlist_head { struct hlist_node *first; };
struct hlist_node { struct hlist_node *next; struct hlist_node **pprev; };
struct rb_node { unsigned long __rb_parent_color; struct rb_node *rb_right;
                 struct rb_node *rb_left; };
struct rb_root { struct rb_node *rb_node; };
struct rb_root_cached { struct rb_root rb_root; struct rb_node *rb_leftmost; };
struct cpumask { unsigned long bits[1]; };

struct percpu_counter { spinlock_t lock; s64 count; struct list_head list; s32 *counters; };
struct maple_tree { spinlock_t ma_lock; unsigned int ma_flags; void *ma_root; };
struct maple_metadata { unsigned char end; unsigned char gap; };
struct maple_range_64 { void *parent; unsigned long pivot[15];
                        union { void *slot[16];
                                struct { void *pad[15]; struct maple_metadata meta; }; }; };
struct maple_arange_64 { void *parent; unsigned long pivot[9]; void *slot[10];
                         unsigned long gap[10]; struct maple_metadata meta; };
struct maple_node { union { struct maple_range_64 mr64; struct maple_arange_64 ma64; }; };
struct mm_struct { struct maple_tree mm_mt; unsigned long mmap_base; unsigned long *pgd;
                   unsigned long total_vm; unsigned long start_brk; unsigned long brk;
                   unsigned long start_stack; struct percpu_counter rss_stat[4];
                   unsigned long arg_start; unsigned long arg_end; unsigned long env_start;
                   unsigned long env_end; };
struct vm_special_mapping { const char *name; };
struct vm_area_struct { unsigned long vm_start; unsigned long vm_end; struct mm_struct *vm_mm;
                        unsigned long vm_flags; void *vm_ops; void *vm_private_data;
                        struct file *vm_file; };

struct qstr { union { struct { u32 hash; u32 len; }; u64 hash_len; };
              const unsigned char *name; };
struct address_space { struct inode *host; unsigned long nrpages; };
struct inode { umode_t i_mode; unsigned int i_flags; unsigned long i_ino;
               struct list_head i_sb_list; struct address_space *i_mapping;
               struct address_space i_data; };
struct dentry { unsigned int d_flags; struct dentry *d_parent; struct qstr d_name;
                struct inode *d_inode; };
struct vfsmount { struct dentry *mnt_root; struct super_block *mnt_sb; int mnt_flags; };
struct mount { struct hlist_node mnt_hash; struct mount *mnt_parent;
               struct dentry *mnt_mountpoint; struct vfsmount mnt; const char *mnt_devname;
               struct list_head mnt_list; };
struct mnt_namespace { struct mount *root; struct list_head list; };
struct nsproxy { struct mnt_namespace *mnt_ns; };
struct file_system_type { const char *name; };
struct path { struct vfsmount *mnt; struct dentry *dentry; };
struct file { spinlock_t f_lock; unsigned int f_mode; struct path f_path;
              struct inode *f_inode; void *private_data; };
struct fdtable { unsigned int max_fds; struct file **fd; };
struct files_struct { atomic_t count; struct fdtable *fdt; struct fdtable fdtab; };
struct fs_struct { int users; spinlock_t lock; struct path root; struct path pwd; };
struct super_block { struct list_head s_list; unsigned long s_blocksize;
                     struct file_system_type *s_type; struct list_head s_inodes; };

typedef struct { unsigned long sig[1]; } sigset_t;
struct sigpending { struct list_head list; sigset_t signal; };
struct sigqueue { struct list_head list; int flags; };
struct sigaction { void *sa_handler; unsigned long sa_flags; void *sa_restorer;
                   sigset_t sa_mask; };
struct k_sigaction { struct sigaction sa; };
struct sighand_struct { refcount_t count; struct k_sigaction action[64]; };
struct rlimit { unsigned long rlim_cur; unsigned long rlim_max; };
struct signal_struct { refcount_t sigcnt; atomic_t live; int nr_threads;
                       struct list_head thread_head; struct sigpending shared_pending;
                       struct rlimit rlim[16]; };
struct thread_struct { unsigned long sp; unsigned short es; unsigned long fsbase; };
struct load_weight { unsigned long weight; u32 inv_weight; };
struct sched_entity { struct load_weight load; struct rb_node run_node; u64 deadline;
                      unsigned int on_rq; u64 vruntime; struct sched_entity *parent;
                      struct cfs_rq *cfs_rq; struct cfs_rq *my_q; };
struct sched_rt_entity { struct list_head run_list; unsigned long timeout;
                         unsigned short on_rq; };
struct inactive_task_frame { unsigned long r15; unsigned long r14; unsigned long r13;
                             unsigned long r12; unsigned long bx; unsigned long bp;
                             unsigned long ret_addr; };
enum pid_type { PIDTYPE_PID, PIDTYPE_TGID, PIDTYPE_PGID, PIDTYPE_SID, PIDTYPE_MAX };
struct sched_info { unsigned long pcount; unsigned long long run_delay;
                    unsigned long long last_arrival; unsigned long long last_queued; };
struct task_struct {
    unsigned int __state; void *stack; refcount_t usage; unsigned int flags;
    int on_cpu; unsigned int cpu; int prio; int static_prio;
    struct sched_entity se; struct sched_rt_entity rt;
    struct list_head tasks; struct mm_struct *mm; struct mm_struct *active_mm;
    int exit_state; int exit_code; pid_t pid; pid_t tgid;
    struct task_struct *real_parent; struct task_struct *parent;
    struct list_head children; struct list_head sibling;
    struct task_struct *group_leader; struct hlist_node pid_links[4];
    struct list_head thread_node; u64 utime; u64 stime; char comm[16];
    struct fs_struct *fs; struct files_struct *files; struct nsproxy *nsproxy;
    struct signal_struct *signal; struct sighand_struct *sighand; sigset_t blocked;
    struct sigpending pending; struct thread_struct thread; struct sched_info sched_info;
    unsigned int policy; u64 start_time;
};

struct cfs_rq { struct load_weight load; unsigned int nr_running;
                struct rb_root_cached tasks_timeline; struct sched_entity *curr; };
struct rt_prio_array { unsigned long bitmap[2]; struct list_head queue[100]; };
struct rt_rq { struct rt_prio_array active; unsigned int rt_nr_running; };
struct rq { spinlock_t __lock; unsigned int nr_running; u64 nr_switches;
            struct cfs_rq cfs; struct rt_rq rt; struct task_struct *curr;
            struct task_struct *idle; u64 clock; int cpu; };

struct upid { int nr; struct pid_namespace *ns; };
struct pid { refcount_t count; unsigned int level; spinlock_t lock;
             struct hlist_head tasks[4]; struct upid numbers[1]; };
struct xarray { spinlock_t xa_lock; gfp_t xa_flags; void *xa_head; };
struct xa_node { unsigned char shift; unsigned char offset; unsigned char count;
                 unsigned char nr_values; struct xa_node *parent; struct xarray *array;
                 void *slots[64]; };
struct idr { struct xarray idr_rt; unsigned int idr_base; unsigned int idr_next; };
struct pid_namespace { struct idr idr; unsigned int level; };

struct new_utsname { char sysname[65]; char nodename[65]; char release[65];
                     char version[65]; char machine[65]; char domainname[65]; };
struct uts_namespace { struct new_utsname name; };

enum module_state { MODULE_STATE_LIVE, MODULE_STATE_COMING, MODULE_STATE_GOING };
enum mod_mem_type { MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT, MOD_INIT_TEXT,
                    MOD_INIT_DATA, MOD_INIT_RODATA, MOD_MEM_NUM_TYPES };
struct module_memory { void *base; unsigned int size; };
struct elf64_sym { u32 st_name; unsigned char st_info; unsigned char st_other;
                   u16 st_shndx; u64 st_value; u64 st_size; };
typedef struct elf64_sym Elf64_Sym;
struct mod_kallsyms { Elf64_Sym *symtab; unsigned int num_symtab; char *strtab;
                      char *typetab; };
struct orc_entry { short sp_offset; short bp_offset; unsigned short flags; };
struct mod_arch_specific { unsigned int num_orcs; int *orc_unwind_ip;
                           struct orc_entry *orc_unwind; };
struct module { enum module_state state; struct list_head list; char name[56];
                struct module_memory mem[7]; unsigned long taints;
                struct mod_kallsyms *kallsyms; struct mod_arch_specific arch; };
struct btf { void *data; u32 data_size; };
struct btf_module { struct list_head list; struct module *module; struct btf *btf; };

enum pageflags { PG_locked, PG_referenced, PG_uptodate, PG_dirty, PG_lru, PG_head = 6,
                 PG_slab = 9 };
struct page { unsigned long flags;
              union { struct { struct list_head lru; void *mapping; unsigned long index;
                               unsigned long private; };
                      struct { unsigned long compound_head; }; };
              union { unsigned int page_type; atomic_t _mapcount; };
              atomic_t _refcount; unsigned long memcg_data; };
struct kmem_cache;
struct slab { unsigned long __page_flags; struct kmem_cache *slab_cache;
              union { struct list_head slab_list; struct { struct slab *next; int slabs; }; };
              void *freelist;
              union { unsigned long counters; struct { u16 inuse; u16 objects; }; };
              unsigned int __unused; atomic_t __page_refcount; unsigned long memcg_data; };
struct kmem_cache_order_objects { unsigned int x; };
struct kmem_cache_cpu { void **freelist; unsigned long tid; struct slab *slab;
                        struct slab *partial; };
struct kmem_cache_node { spinlock_t list_lock; unsigned long nr_partial;
                         struct list_head partial; atomic_long_t nr_slabs;
                         atomic_long_t total_objects; struct list_head full; };
struct kmem_cache { struct kmem_cache_cpu *cpu_slab; unsigned int size;
                    unsigned int object_size; unsigned int offset;
                    struct kmem_cache_order_objects oo; const char *name;
                    struct list_head list; unsigned long random; unsigned int red_left_pad;
                    struct kmem_cache_node *node[1]; };
struct vm_struct { struct vm_struct *next; void *addr; unsigned long size; };
struct vmap_area { unsigned long va_start; unsigned long va_end; struct rb_node rb_node;
                   struct list_head list; struct vm_struct *vm; };
struct irqaction { void *handler; void *dev_id; struct irqaction *next; int irq;
                   const char *name; };
struct irq_chip { const char *name; };
struct irq_data { unsigned int irq; struct irq_chip *chip; };
struct irq_common_data { unsigned int state_use_accessors; struct cpumask *affinity; };
struct irqstat { unsigned int cnt; unsigned int ref; };
struct irq_desc { struct irq_common_data irq_common_data; struct irq_data irq_data;
                  struct irqstat *kstat_irqs; unsigned int irq; struct irqaction *action; };
struct softirq_action { void *action; };
enum softirq_vectors { HI_SOFTIRQ, TIMER_SOFTIRQ, NR_SOFTIRQS };
struct swap_info_struct { unsigned long flags; short prio; struct file *swap_file;
                          unsigned int pages; unsigned int inuse_pages; };

struct timer_list { struct hlist_node entry; unsigned long expires; void *function;
                    u32 flags; };
struct timer_base { spinlock_t lock; struct timer_list *running_timer; unsigned long clk;
                    unsigned int cpu; struct hlist_head vectors[64]; };
struct in_ifaddr { struct in_ifaddr *ifa_next; u32 ifa_local; u32 ifa_address; };
struct in_device { void *dev; struct in_ifaddr *ifa_list; };
struct net_device { char name[16]; struct list_head dev_list; struct in_device *ip_ptr; };
struct net { refcount_t passive; struct list_head dev_base_head; };
struct sock_common { u32 skc_daddr; u32 skc_rcv_saddr; u16 skc_dport; u16 skc_num;
                     unsigned short skc_family; };
struct sock { struct sock_common __sk_common; u16 sk_type; };
struct socket { short state; short type; struct file *file; struct sock *sk; };
struct cdev { void *kobj; void *owner; const void *ops; };
struct char_device_struct { struct char_device_struct *next; unsigned int major;
                            unsigned int baseminor; int minorct; char name[64];
                            struct cdev *cdev; };
struct probe { struct probe *next; u32 dev; unsigned long range; void *owner; void *get;
               void *lock; void *data; };
struct kobj_map { struct probe *probes[255]; };
struct blk_major_name { struct blk_major_name *next; int major; char name[16]; };
typedef struct { unsigned int val; } kuid_t;
struct kern_ipc_perm { spinlock_t lock; bool deleted; int id; int key; kuid_t uid;
                       kuid_t gid; umode_t mode; };
struct shmid_kernel { struct kern_ipc_perm shm_perm; unsigned long shm_segsz;
                      unsigned long shm_nattch; };
struct sem_array { struct kern_ipc_perm sem_perm; int sem_nsems; };
struct msg_queue { struct kern_ipc_perm q_perm; unsigned long q_cbytes;
                   unsigned long q_qnum; };
struct ipc_ids { int in_use; struct idr ipcs_idr; };
struct ipc_namespace { struct ipc_ids ids[3]; };
struct wait_queue_head { spinlock_t lock; struct list_head head; };
struct wait_queue_entry { unsigned int flags; void *private; void *func;
                          struct list_head entry; };

enum migratetype { MIGRATE_UNMOVABLE, MIGRATE_MOVABLE, MIGRATE_RECLAIMABLE, MIGRATE_PCPTYPES,
                   MIGRATE_HIGHATOMIC = 3, MIGRATE_ISOLATE, MIGRATE_TYPES };
struct free_area { struct list_head free_list[5]; unsigned long nr_free; };
struct zone { unsigned long _watermark[4]; unsigned long watermark_boost;
              atomic_long_t vm_stat[3]; unsigned long zone_start_pfn;
              unsigned long spanned_pages; unsigned long present_pages; const char *name;
              struct free_area free_area[11]; };
struct pglist_data { struct zone node_zones[3]; int node_id; unsigned long node_start_pfn;
                     unsigned long node_spanned_pages; };

enum bpf_prog_type { BPF_PROG_TYPE_UNSPEC, BPF_PROG_TYPE_SOCKET_FILTER, BPF_PROG_TYPE_KPROBE };
enum bpf_map_type { BPF_MAP_TYPE_UNSPEC, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY };
struct bpf_map { enum bpf_map_type map_type; u32 key_size; u32 map_flags; u32 id; };
struct bpf_prog_aux { u32 id; u32 used_map_cnt; struct bpf_map **used_maps; };
struct bpf_prog { u16 pages; enum bpf_prog_type type; u8 tag[8];
                  struct bpf_prog_aux *aux; };

enum zone_stat_item { NR_FREE_PAGES, NR_ZONE_LRU_BASE, NR_MLOCK, NR_VM_ZONE_STAT_ITEMS };
enum node_stat_item { NR_LRU_BASE, NR_SLAB_RECLAIMABLE_B, NR_SLAB_UNRECLAIMABLE_B,
                      NR_FILE_PAGES, NR_SHMEM, NR_SWAPCACHE, NR_VM_NODE_STAT_ITEMS };
struct hstate { int next_nid; unsigned int order; unsigned long nr_huge_pages;
                unsigned long free_huge_pages; char name[32]; };
enum vm_event_item { PGPGIN, PGPGOUT, PGFAULT, NR_VM_EVENT_ITEMS };
struct vm_event_state { unsigned long event[3]; };
"""
