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
    ), // Head office's pages (head_office/console.rs).
    ("archive", "报告档案", "Report archive"),
    ("month", "月份", "Month"),
    ("branch", "分公司", "Branch"),
    ("customer_id", "客户编号", "Customer id"),
    ("product_type", "产品类型", "Product type"),
    ("reports_verified", "份已验证的报告", "verified reports"),
    ("showing_latest", "显示最新的", "showing the latest"),
    ("no_reports", "没有报告。", "No reports."),
    ("signed_at", "签发时间", "Signed at"),
    ("verification", "验证", "Verification"),
    ("verified", "已验证", "Verified"),
    ("report_id", "报告编号", "Report id"),
    (
        "printable_pdf",
        "可打印的 PDF（附签名报告）",
        "Printable PDF (with the signed report attached)",
    ),
    ("rejected_reports", "未归档的报告", "Reports not archived"),
    (
        "rejected_help",
        "校验未通过的报告附有原因；修正后（例如登记分公司密钥）运行 fieldsync archive retry 重新校验。",
        "Each report that failed a check shows why; once fixed (e.g. the branch key enrolled), `fieldsync archive retry` checks it again.",
    ),
    ("no_rejected", "没有被拒的报告。", "No rejected reports."),
    ("at", "时间", "At"),
    ("reason", "原因", "Reason"),
    (
        "pending_reports",
        "等待工单文档的报告",
        "Reports waiting for their job document",
    ),
    ("no_pending", "没有等待中的报告。", "No reports waiting."),
    ("statistics", "月度统计", "Monthly statistics"),
    ("show", "显示", "Show"),
    ("fault_causes", "故障原因 (R27)", "Fault causes (R27)"),
    (
        "stats_definitions",
        "每项的定义见导出的 CSV（以 # 开头的行）。金额为各工单的币种，保留两位小数。",
        "Each line's definition is in the exported CSV (the lines starting with #). Amounts are in the jobs' currency, two decimals.",
    ),
    (
        "not_a_month",
        "不是月份 (YYYY-MM)：",
        "Not a month (YYYY-MM):",
    ),
    (
        "unknown_report",
        "档案中没有这份报告。",
        "No such report in the archive.",
    ),
    ("not_answered", "未作答", "not answered"),
    (
        "reports_per_month",
        "每月已验证报告",
        "Verified reports per month",
    ),
    ("stat_reports", "报告数", "Reports"),
    (
        "stat_installation_jobs",
        "安装工单 (R24-1)",
        "Installation jobs (R24 1)",
    ),
    (
        "stat_installation_cost",
        "安装费用 (R24-1)",
        "Installation cost (R24 1)",
    ),
    (
        "stat_service_jobs",
        "服务工单 (R24-2)",
        "Service jobs (R24 2)",
    ),
    (
        "stat_service_cost",
        "服务费用 (R24-2)",
        "Service cost (R24 2)",
    ),
    (
        "stat_materials_cost",
        "材料费（已含在上列费用中，R24-3）",
        "Materials (in the costs above, R24 3)",
    ),
    (
        "stat_transport_cost",
        "交通费（已含在上列费用中，R24-4）",
        "Transport (in the costs above, R24 4)",
    ),
    (
        "stat_warranty_jobs",
        "保修工单 (R24-6)",
        "Warranty jobs (R24 6)",
    ),
    (
        "stat_billable_jobs",
        "收费工单 (R24-6)",
        "Billable jobs (R24 6)",
    ),
    (
        "stat_billed",
        "向客户收费 (R24-6)",
        "Billed to customers (R24 6)",
    ),
    (
        "stat_repeat_repairs",
        "重复维修 (R4)",
        "Repeat repairs (R4)",
    ),
    (
        "stat_mean_attitude",
        "服务态度平均分 (R9)",
        "Mean attitude (R9)",
    ),
    (
        "stat_mean_skill",
        "技术水平平均分 (R9)",
        "Mean technical skill (R9)",
    ),
    (
        "stat_mean_punctuality",
        "准时平均分 (R9)",
        "Mean punctuality (R9)",
    ),
    (
        "stat_mean_service_items",
        "服务项目平均分 (R9)",
        "Mean service items (R9)",
    ),
    ("complaints", "投诉", "Complaints"),
    ("complaint_rate", "投诉率", "Complaint rate"),
    (
        "complaints_across_branches",
        "各分公司投诉",
        "Complaints across branches",
    ),
    ("complaints_open", "处理中", "Open"),
    ("complaints_valid", "有效", "Valid"),
    ("complaints_not_valid", "无效", "Not valid"),
    ("attribution", "归属", "Attribution"),
    (
        "complaint_rate_definition",
        "投诉率 (R22)：当月收到的投诉数 ÷ 当月签发并经总部验证的服务报告数（被取代的报告不计）。",
        "Complaint rate (R22): complaints received in the month ÷ service reports signed in the month and verified by head office (superseded reports left out).",
    ),
    ("quality_digest", "质量摘要 (R27)", "Quality digest (R27)"),
    (
        "quality_help",
        "各分公司服务报告中发现的故障原因（与上月比较）、重复维修和归属于质量的投诉，供质量部门分析原因并转交责任部门。",
        "The fault causes found in every branch's service reports (against the month before), the repeat repairs and the complaints attributed to quality, for Quality to analyse and send to the departments responsible.",
    ),
    (
        "quality_complaints",
        "质量投诉",
        "Complaints attributed to quality",
    ),
    ("fault_cause_col", "故障原因", "Fault cause"),
    ("days_between", "间隔天数", "Days between"),
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
