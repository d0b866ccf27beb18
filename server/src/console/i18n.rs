//! The console's words in Chinese and English. Each person's account stores the language
//! they read (`accounts::User::lang`, switched from any page); Chinese, the seed's language, is
//! the default. Every label is one row of [`LABELS`], so a label cannot exist in one
//! language only.

pub use crate::accounts::Lang;

impl Lang {
    /// The label `key` in this language. An unknown key is `?` (never a panic).
    pub fn t(self, key: &str) -> &'static str {
        match LABELS.iter().find(|(k, _, _)| *k == key) {
            Some((_, zh, en)) => match self {
                Lang::Zh => zh,
                Lang::En => en,
            },
            None => "?",
        }
    }
}

/// `(key, Chinese, English)`.
pub const LABELS: &[(&str, &str, &str)] = &[
    ("product", "fieldsync 售后服务", "fieldsync field service"),
    ("language_name", "中文", "English"),
    ("switch_language", "切换语言", "Switch language"),
    ("skip_to_content", "跳到正文", "Skip to content"),
    ("sign_in", "登录", "Sign in"),
    ("sign_out", "退出", "Sign out"),
    ("user_name", "用户名", "User name"),
    ("password", "密码", "Password"),
    (
        "login_refused",
        "用户名或密码错误。",
        "Wrong user name or password.",
    ),
    (
        "login_locked",
        "密码错误次数过多，账户已锁定至",
        "Too many wrong passwords: the account is locked until",
    ),
    (
        "login_disabled",
        "此账户已停用，请联系经理。",
        "This account is disabled; ask a manager.",
    ),
    (
        "session_expired",
        "长时间未操作，请重新登录。",
        "You were away too long; please sign in again.",
    ),
    ("signed_out", "已退出。", "You are signed out."),
    (
        "form_expired",
        "表单已失效，请重试。",
        "The form expired; please try again.",
    ),
    ("board", "工单看板", "Job board"),
    ("audit", "操作日志", "Audit log"),
    ("export_csv", "导出 CSV", "Export CSV"),
    ("forbidden", "无权访问", "Not allowed"),
    (
        "forbidden_text",
        "您的角色不能查看此页面，需要：",
        "Your role may not see this page; it needs:",
    ),
    ("not_found", "未找到", "Not found"),
    ("role", "角色", "Role"),
    ("role_dispatcher", "调度员", "Dispatcher"),
    ("role_manager", "经理", "Manager"),
    ("role_director", "售后总监", "After-sales director"),
    ("role_analyst", "分析员", "Analyst"),
    ("when", "时间", "When"),
    ("who", "操作人", "Who"),
    ("action", "操作", "Action"),
    ("target", "对象", "Target"),
    ("before", "之前", "Before"),
    ("after", "之后", "After"),
    ("detail", "说明", "Detail"),
    ("previous_page", "上一页", "Previous page"),
    ("next_page", "下一页", "Next page"),
    ("page", "页", "Page"),
    ("of", "/", "of"),
    ("times_in", "时间均为", "Times are in"),
    ("filter", "筛选", "Filter"),
    ("status", "状态", "Status"),
    ("any", "全部", "Any"),
    ("technician", "技术员", "Technician"),
    ("customer", "客户", "Customer"),
    ("from_date", "起始日期", "From"),
    ("to_date", "截止日期", "To"),
    ("sla", "时限 (R2)", "Due (R2)"),
    ("received", "受理时间", "Received"),
    ("requested_arrival", "要求到达", "Arrival asked for"),
    ("product_col", "产品", "Product"),
    ("no_jobs", "没有符合条件的工单。", "No jobs match."),
    ("jobs_total", "个工单", "jobs"),
    ("job", "工单", "Job"),
    ("kind", "类型", "Kind"),
    ("kind_repair", "维修", "Repair"),
    ("kind_installation", "安装调试", "Installation"),
    ("kind_maintenance", "保养", "Maintenance"),
    ("kind_follow_up", "回访", "Follow-up"),
    ("status_new", "新建", "New"),
    ("status_assigned", "已预约", "Appointment agreed"),
    ("status_on_site", "在现场", "On site"),
    ("status_completed", "待签发", "Completed, awaiting report"),
    ("status_signed", "已签发", "Report signed"),
    ("status_refused", "被退回", "Report refused"),
    ("flag_waiting_approval", "待审批", "Waiting approval"),
    (
        "flag_stale_acknowledgement",
        "客户确认已失效",
        "Acknowledgement out of date",
    ),
    ("flag_conflicts", "有冲突", "With conflicts"),
    ("flag_stranded", "有未合并的修改", "Stranded changes"),
    ("sla_overdue", "已超时", "Overdue"),
    ("sla_due_soon", "即将到期", "Due soon"),
    ("sla_running", "未到期", "Running"),
    ("sla_met", "按时", "Met"),
    ("sla_met_late", "迟到", "Met late"),
    ("sla_none", "无要求", "None asked"),
    ("request", "报修", "Request"),
    ("fault", "故障描述", "Fault"),
    ("channel", "渠道", "Channel"),
    ("serial", "序列号", "Serial"),
    ("model", "型号", "Model"),
    ("warranty_end", "保修截止", "Warranty ends"),
    ("contact", "联系方式", "Contact"),
    ("address", "地址", "Address"),
    ("visit", "上门", "Visit"),
    ("appointment", "预约时间", "Appointment"),
    ("arrival", "到达时间", "Arrived"),
    ("check_out", "离场报告 (R11)", "Check-out (R11)"),
    ("diagnosis", "诊断", "Diagnosis"),
    ("fault_cause", "故障原因", "Fault cause"),
    ("solution", "处理方法", "Solution"),
    ("parts", "更换配件", "Parts replaced"),
    ("quantity", "数量", "Quantity"),
    ("unit_price", "单价", "Unit price"),
    ("under_warranty", "保修内", "Under warranty"),
    ("charges", "费用 (R10)", "Charges (R10)"),
    ("labour", "人工", "Labour"),
    ("travel", "差旅", "Travel"),
    ("customer_pays", "客户应付", "Customer pays"),
    (
        "acknowledgement",
        "客户确认 (R8, R9)",
        "Customer acknowledgement (R8, R9)",
    ),
    ("signed_by", "签字人", "Signed by"),
    ("survey", "满意度", "Survey"),
    ("report", "服务报告", "Service report"),
    ("refusal_reasons", "退回原因", "Refused because"),
    ("conflicts", "冲突", "Conflicts"),
    ("timeline", "经过", "Timeline"),
    ("none_yet", "尚无", "None yet"),
    ("yes", "是", "Yes"),
    ("no", "否", "No"),
    ("back_to_board", "返回看板", "Back to the board"),
    ("notes", "备注", "Notes"),
    (
        "nothing_here_yet",
        "总部的页面尚未开放。",
        "Head office's pages are not open yet.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_says_something_in_both_languages_and_keys_are_unique() {
        let mut keys = std::collections::BTreeSet::new();
        for (key, zh, en) in LABELS {
            assert!(keys.insert(*key), "label {key:?} twice");
            assert!(!zh.is_empty() && !en.is_empty(), "{key}");
        }
        assert_eq!(Lang::Zh.t("sign_in"), "登录");
        assert_eq!(Lang::En.t("sign_in"), "Sign in");
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("fr"), None);
    }
}
