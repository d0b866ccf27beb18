//! The console's words in Chinese and English. Each person's account stores the language
//! they read (`accounts::User::lang`, switched from any page); Chinese, the seed's language, is
//! the default. Every label is one row of [`LABELS`], so a label cannot exist in one
//! language only.

pub use crate::accounts::Lang;

impl Lang {
    /// The label `key` in this language. An unknown key is `?` (never a panic).
    pub fn t(self, key: &str) -> &'static str {
        self.label(key).unwrap_or("?")
    }

    /// The label `key` in this language, if there is one.
    pub fn label(self, key: &str) -> Option<&'static str> {
        LABELS
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, zh, en)| match self {
                Lang::Zh => *zh,
                Lang::En => *en,
            })
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
    ("status_cancelled", "已取消", "Cancelled"),
    ("intake", "受理报修", "Intake"),
    ("approvals", "审批", "Approvals"),
    ("follow_ups", "回访", "Follow-up calls"),
    ("new_request", "登记报修", "Register a request"),
    ("channel_phone", "电话", "Phone"),
    ("channel_letter", "信函", "Letter"),
    ("channel_visit", "来访", "Visit"),
    ("channel_email", "邮件", "Email"),
    ("channel_web", "网站", "Web"),
    ("customer_id", "客户编号", "Customer number"),
    ("product_type", "产品类型", "Product type"),
    ("purchase_date", "购买日期", "Purchase date"),
    ("fault_category", "故障类别", "Fault category"),
    ("optional", "选填", "optional"),
    ("register", "登记", "Register"),
    (
        "requests_waiting",
        "待派工的报修",
        "Requests waiting for dispatch",
    ),
    (
        "no_requests_waiting",
        "没有待派工的报修。",
        "No request is waiting for dispatch.",
    ),
    ("dispatch", "派工", "Dispatch"),
    (
        "dispatch_request",
        "派工并预约",
        "Dispatch and agree the appointment",
    ),
    ("billing_mode", "收费方式", "Billing"),
    (
        "billing_default",
        "按保修期自动判断",
        "By the warranty (default)",
    ),
    ("billing_warranty", "保修", "Warranty"),
    ("billing_billable", "收费", "Billable"),
    (
        "contract_due",
        "合同完工日期（安装必填）",
        "Contract completion date (installations)",
    ),
    (
        "appointment_hint",
        "与客户约定的上门时间（选填）",
        "Visit time agreed with the customer (optional)",
    ),
    ("contacted_by", "联系客户的人", "Contacted by"),
    (
        "fault_rechecked",
        "与客户核实的故障",
        "Fault re-checked with the customer",
    ),
    (
        "pre_assign",
        "预派（技术员尚无设备）",
        "Pre-assign (the technician has no device yet)",
    ),
    ("desk_actions", "调度操作", "Desk actions"),
    ("reassign", "改派技术员", "Reassign technicians"),
    (
        "technicians_hint",
        "多名技术员用逗号分隔",
        "Separate several technicians with commas",
    ),
    ("save", "保存", "Save"),
    ("cancel_job", "取消工单", "Cancel the job"),
    ("cancel_reason", "取消原因", "Reason"),
    ("cancelled_because", "工单已取消：", "The job is cancelled:"),
    (
        "done_request_created",
        "报修已登记，请派工。",
        "The request is registered; dispatch it.",
    ),
    ("done_dispatched", "已派工。", "Dispatched."),
    (
        "done_reassigned",
        "技术员已改派。",
        "The technicians are changed.",
    ),
    ("done_cancelled", "工单已取消。", "The job is cancelled."),
    ("done_decided", "审批已记录。", "The decision is recorded."),
    ("done_called", "回访已记录。", "The call is recorded."),
    ("approvals_waiting", "待审批", "Waiting for a decision"),
    ("approvals_decided", "已审批", "Decided"),
    (
        "none_waiting",
        "没有待审批的申请。",
        "Nothing is waiting for a decision.",
    ),
    ("approval_extension", "延期（R12）", "Extension (R12)"),
    (
        "approval_other_solution",
        "其他解决方案（R12）",
        "Other solution (R12)",
    ),
    (
        "approval_warranty_part",
        "保修索赔件（R18）",
        "Warranty-claim part (R18)",
    ),
    (
        "approval_product_return",
        "退货（R31）",
        "Product return (R31)",
    ),
    (
        "approval_travel_expense",
        "差旅费（R28）",
        "Travel expense (R28)",
    ),
    ("reason", "原因", "Reason"),
    ("requested_by", "申请人", "Requested by"),
    ("amount", "金额", "Amount"),
    ("decides", "审批人", "Decides"),
    (
        "director_decides",
        "超过限额，由售后总监审批",
        "Above the limit: the after-sales director decides",
    ),
    ("decision_note", "审批意见", "Note"),
    ("approve", "批准", "Approve"),
    ("refuse", "驳回", "Refuse"),
    ("approved", "已批准", "Approved"),
    ("refused_decision", "已驳回", "Refused"),
    ("decision", "结果", "Decision"),
    ("not_done", "未完成：", "Not done:"),
    (
        "err_invalid_field",
        "表单中有一项填写不对。",
        "Something in the form is not right.",
    ),
    (
        "err_invalid_body",
        "表单中有一项填写不对。",
        "Something in the form is not right.",
    ),
    (
        "err_bad_time",
        "时间格式不对，请按 年-月-日 时:分 填写。",
        "The time is not a date and time (YYYY-MM-DD HH:MM).",
    ),
    (
        "err_contract_due_required",
        "R16：安装工单须填写合同完工日期。",
        "R16: an installation job needs the contract's completion date.",
    ),
    (
        "err_after_contract_due",
        "R16：安装须在合同完工日期前完成，预约时间晚于该日期。",
        "R16: installation must be done by the contract's date; the appointment is after it.",
    ),
    (
        "err_unknown_technician",
        "这名技术员没有已登记的设备（新员工请勾选预派）。",
        "No enrolled device belongs to this technician (tick pre-assign for new staff).",
    ),
    (
        "err_already_dispatched",
        "此报修已经派工。",
        "This request is already dispatched.",
    ),
    (
        "err_conflict",
        "他人刚刚修改了这条记录，请刷新后再试。",
        "Someone changed this just now; reload and try again.",
    ),
    (
        "err_unknown_request",
        "没有这条报修。",
        "There is no such request.",
    ),
    ("err_unknown_job", "没有这个工单。", "There is no such job."),
    (
        "err_invalid_job_id",
        "没有这个工单。",
        "There is no such job.",
    ),
    (
        "err_already_cancelled",
        "此工单已经取消。",
        "This job is already cancelled.",
    ),
    (
        "err_already_signed",
        "服务报告已签发，已完成的工单不能取消。",
        "The service report is signed: a served job cannot be cancelled.",
    ),
    (
        "err_director_approval",
        "R18：索赔金额超过限额，须由售后总监审批。",
        "R18: the amount is above the limit; the after-sales director decides.",
    ),
    (
        "err_already_decided",
        "此申请已经审批过。",
        "This request is already decided.",
    ),
    (
        "err_unknown_approval",
        "没有这个审批申请。",
        "There is no such approval request.",
    ),
    (
        "err_approvals_loading",
        "审批队列正在加载，请稍后再试。",
        "The approvals are still loading; try again shortly.",
    ),
    (
        "err_not_served",
        "R14：服务报告尚未签发，回访在服务之后。",
        "R14: the job has no signed report yet; the call follows the service.",
    ),
    (
        "err_satisfaction_required",
        "R14：已联系上客户，请记录是否满意。",
        "R14: the customer was reached; record whether they are satisfied.",
    ),
    (
        "err_already_called",
        "已经回访过这位客户。",
        "This customer was already reached.",
    ),
    ("err_other", "操作未完成。", "This could not be done."),
    (
        "follow_ups_today",
        "回访（前一天完成的服务）",
        "Follow-up calls (jobs served the day before)",
    ),
    (
        "no_follow_ups",
        "这一天没有要回访的客户。",
        "No customer to call on this day.",
    ),
    ("served", "服务完成", "Served"),
    ("record_call", "记录回访", "Record the call"),
    ("reached", "已联系上", "Reached"),
    ("not_reached", "未接通", "Not reached"),
    ("satisfied", "满意", "Satisfied"),
    ("not_satisfied", "不满意", "Not satisfied"),
    ("comments", "客户意见", "Comments"),
    ("calls_made", "已回访", "Calls made"),
    ("date", "日期", "Date"),
    ("show", "显示", "Show"),
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
